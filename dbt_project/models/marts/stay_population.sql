{{ config(materialized='external', location=var('feature_dir') ~ '/stay_population.parquet') }}
-- Every ICU stay with the facts that decide, as of any time t, whether the stay is in the intended population
-- (docs/SCORING.md): an adult's first Sepsis-3 ICU stay, recognised from stored rows, at or after T =
-- recognition + {{ var('prediction_hours') }} h, and still in the ICU. Each fact carries its time, so the
-- scorer decides with what was known at t only. Read by the scorer, the service and `sepsis-fusion stays`;
-- never by the model.
select
    cast(c.stay_id as {{ dbt.type_bigint() }}) as stay_id,
    cast(c.subject_id as {{ dbt.type_bigint() }}) as subject_id,
    c.intime,
    c.outtime,
    c.deathtime,
    c.age,
    c.is_adult,
    c.is_first_sepsis3_stay,
    c.recognition_time,
    c.prediction_time,
    c.is_adult and c.is_first_sepsis3_stay and c.is_recognised and not c.ended_before_prediction as in_cohort,
    c.extract_time
from {{ ref('int_cohort_candidates') }} as c
