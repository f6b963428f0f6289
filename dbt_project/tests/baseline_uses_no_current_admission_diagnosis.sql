-- Point-in-time rule: diagnosis codes are assigned at discharge, so a baseline comorbidity may come only
-- from admissions that ended before the stay's admission began. Returns every stay whose flag is set
-- without such an admission to support it (the build fails on any row).
{% set components = charlson_components() %}
with known as (
    select
        c.stay_id,
        {%- for comp in components %}
        coalesce(max(h.{{ comp }}), 0) as {{ comp }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ ref('cohort') }} as c
    inner join {{ ref('stg_hosp_admissions') }} as a on a.hadm_id = c.hadm_id
    left join {{ ref('int_charlson_by_admission') }} as h
        on h.subject_id = c.subject_id and h.dischtime <= a.admittime and h.hadm_id <> c.hadm_id
    group by c.stay_id
)
select b.stay_id
from {{ ref('static_baseline') }} as b
inner join known as k on k.stay_id = b.stay_id
where {% for comp in components %}b.{{ comp }} > k.{{ comp }}{{ " or " if not loop.last }}{% endfor %}
