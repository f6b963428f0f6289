{{ config(materialized='external', location=var('feature_dir') ~ '/cohort_excluded.parquet') }}
-- The first Sepsis-3 stays of adult patients that did not reach the cohort, with why and what is known of
-- them, for the report's Table 1 (docs/COHORT.md): 'not recognised from stored rows', 'died before T' or
-- 'left the ICU alive before T'. Never read by the model or Feast.
select
    cast(c.stay_id as {{ dbt.type_bigint() }}) as stay_id,
    cast(c.subject_id as {{ dbt.type_bigint() }}) as subject_id,
    case when not c.is_recognised then 'not recognised from stored rows'
         when c.died_before_prediction then 'died before T'
         else 'left the ICU alive before T' end as reason,
    c.age,
    cast(p.gender = 'F' as integer) as female,
    a.admission_type,
    a.insurance,
    a.race,
    c.onset_time,
    c.recognition_time,
    c.prediction_time,
    c.outtime,
    c.sofa_score_at_onset,
    c.died_in_hospital
from {{ ref('int_cohort_candidates') }} as c
inner join {{ ref('stg_hosp_admissions') }} as a on a.hadm_id = c.hadm_id
inner join {{ ref('stg_hosp_patients') }} as p on p.subject_id = c.subject_id
where c.is_first_sepsis3_stay and (not c.is_recognised or c.ended_before_prediction)
