{{ config(materialized='external', location=var('feature_dir') ~ '/cohort.parquet') }}
-- The prediction task (docs/COHORT.md): adult ICU stays meeting Sepsis-3, the first such stay
-- per patient; onset = sofa_time (not before ICU admission); recognition = when every criterion of the
-- first-recognised Sepsis-3 pair was known; prediction time T = recognition + {{ var('prediction_hours') }} h;
-- stays that ended before T are left out (counted in cohort_flow). Labels are about what happens after T.
select
    cast(stay_id as {{ dbt.type_bigint() }}) as stay_id,
    cast(subject_id as {{ dbt.type_bigint() }}) as subject_id,
    hadm_id,
    intime,
    outtime,
    age,
    onset_time,
    prediction_time,
    sofa_score_at_onset,
    died_in_hospital,
    died_in_icu,
    died_within_horizon,
    deathtime,
    recognition_time,
    sofa_score_at_prediction,
    anchor_year_group
from {{ ref('int_cohort_candidates') }}
where is_adult and is_first_sepsis3_stay and not ended_before_prediction
