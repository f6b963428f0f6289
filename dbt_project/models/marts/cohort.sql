{{ config(materialized='external', location=var('feature_dir') ~ '/cohort.parquet') }}
-- The prediction task (docs/COHORT.md): adult ICU stays meeting Sepsis-3, the first such stay per patient,
-- recognised from stored rows; onset = sofa_time (not before ICU admission); recognition = when one of the
-- stay's Sepsis-3 pairs was first complete from stored rows; prediction time T = recognition +
-- {{ var('prediction_hours') }} h; stays that ended before T are left out (counted in cohort_flow, described in
-- cohort_excluded). Labels are about what happens after T; SOFA and OASIS at T are the clinical comparators.
-- A live extract's open stays are here too, for scoring; their labels are null until outcome_known (training
-- and evaluation read only stays whose outcome is known).
select
    cast(c.stay_id as {{ dbt.type_bigint() }}) as stay_id,
    cast(c.subject_id as {{ dbt.type_bigint() }}) as subject_id,
    c.hadm_id,
    c.intime,
    c.outtime,
    c.age,
    c.onset_time,
    c.prediction_time,
    c.sofa_score_at_onset,
    case when c.outcome_known then c.died_within_horizon end as died_within_horizon,
    case when c.outcome_known then c.died_in_hospital end as died_in_hospital,
    case when c.outcome_known then c.died_or_hospice_within_horizon end as died_or_hospice_within_horizon,
    case when c.outcome_known then c.died_in_icu end as died_in_icu,
    c.deathtime,
    c.outcome_known,
    c.recognition_time,
    c.sofa_score_at_prediction,
    o.oasis as oasis_at_prediction,
    c.anchor_year_group,
    '{{ var("culture_known_at") }}' as culture_known_at,
    '{{ var("sofa_known_at") }}' as sofa_known_at,
    cast({{ var('mortality_horizon_days') }} as integer) as mortality_horizon_days
from {{ ref('int_cohort_candidates') }} as c
left join {{ ref('int_oasis_at_prediction') }} as o on o.stay_id = c.stay_id
where c.is_adult and c.is_first_sepsis3_stay and c.is_recognised and not c.ended_before_prediction
