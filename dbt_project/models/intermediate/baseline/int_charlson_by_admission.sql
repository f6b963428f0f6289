-- Charlson comorbidity components per admission from its discharge diagnoses (mimic-code charlson).
-- Diagnoses are coded at discharge: an admission's components are known only after it ended.
{% set components = charlson_components() %}
with matched as (
    select distinct d.hadm_id, r.component
    from {{ ref('stg_hosp_diagnoses_icd') }} as d
    inner join {{ ref('charlson_icd_rules') }} as r
        on r.icd_version = d.icd_version
        and substr(d.icd_code, 1, r.prefix_length) between r.code_from and r.code_to
)
select
    a.subject_id,
    a.hadm_id,
    a.admittime,
    a.dischtime,
    {%- for c in components %}
    coalesce(max(case when m.component = '{{ c }}' then 1 end), 0) as {{ c }}{{ ',' if not loop.last }}
    {%- endfor %}
from {{ ref('stg_hosp_admissions') }} as a
left join matched as m on m.hadm_id = a.hadm_id
group by a.subject_id, a.hadm_id, a.admittime, a.dischtime
