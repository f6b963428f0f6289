-- Antibiotic prescriptions (mimic-code antibiotic): drug names matching the antibiotic list, not base
-- solutions, not eye/ear/topical routes, creams, gels or desensitisation; attached to the ICU stay of
-- the same admission in which they start.
with antibiotic_drugs as (
    select distinct drug, route
    from {{ ref('stg_hosp_prescriptions') }} as p
    where drug_type not in ('BASE')
      and route not in ('OU', 'OS', 'OD', 'AU', 'AS', 'AD', 'TP')
      and lower(route) not like '%ear%'
      and lower(route) not like '%eye%'
      and lower(drug) not like '%cream%'
      and lower(drug) not like '%desensitization%'
      and lower(drug) not like '%ophth oint%'
      and lower(drug) not like '%gel%'
      and exists (select 1 from {{ ref('antibiotic_name_patterns') }} as a
                  where lower(p.drug) like '%' || a.pattern || '%')
)
select
    pr.subject_id,
    pr.hadm_id,
    ie.stay_id,
    pr.drug as antibiotic,
    pr.route,
    pr.starttime,
    pr.stoptime
from {{ ref('stg_hosp_prescriptions') }} as pr
inner join antibiotic_drugs as a on a.drug = pr.drug and a.route = pr.route
left join {{ ref('int_icu_stay_spans') }} as ie
    on ie.hadm_id = pr.hadm_id and pr.starttime >= ie.intime and pr.starttime < ie.ends_at
