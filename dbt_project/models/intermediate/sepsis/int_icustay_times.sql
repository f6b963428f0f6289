-- First and last heart rate of each ICU stay: the span the hourly SOFA grid covers (mimic-code icustay_times).
select
    ie.subject_id,
    ie.hadm_id,
    ie.stay_id,
    hr.intime_hr,
    hr.outtime_hr
from {{ ref('stg_icu_icustays') }} as ie
left join (
    select stay_id, min(charttime) as intime_hr, max(charttime) as outtime_hr
    from {{ ref('stg_icu_chartevents') }}
    where itemid = 220045
    group by stay_id
) as hr on hr.stay_id = ie.stay_id
