{{ config(materialized='external', location=var('feature_dir') ~ '/cohort_flow.parquet') }}
-- How many ICU stays each cohort criterion removed, in the order they apply. At step 5, what counting T
-- from recognition rather than onset changed: kept stays whose T moved later, and stays that would have
-- been kept with T = onset + {{ var('prediction_hours') }} h but ended before the later T.
with candidates as (
    select * from {{ ref('int_cohort_candidates') }}
),
steps as (
    select 1 as step, 'ICU stays' as criterion, count(*) as stays,
           cast(null as {{ dbt.type_bigint() }}) as prediction_time_moved,
           cast(null as {{ dbt.type_bigint() }}) as removed_by_later_recognition
    from candidates
    union all
    select 2, 'age >= {{ var("min_age") }}', count(*) filter (where is_adult), null, null from candidates
    union all
    select 3, 'meets Sepsis-3', count(*) filter (where is_adult and meets_sepsis3), null, null from candidates
    union all
    select 4, 'first Sepsis-3 stay of the patient', count(*) filter (where is_first_sepsis3_stay), null, null
    from candidates
    union all
    select 5, 'still in the ICU and alive at T = recognition + {{ var("prediction_hours") }} h',
           count(*) filter (where is_first_sepsis3_stay and not ended_before_prediction),
           count(*) filter (where is_first_sepsis3_stay and not ended_before_prediction
                                  and prediction_time > prediction_time_at_onset),
           count(*) filter (where is_first_sepsis3_stay and not ended_before_onset_prediction
                                  and ended_before_prediction)
    from candidates
)
select
    step,
    criterion,
    stays,
    coalesce(lag(stays) over (order by step) - stays, 0) as removed,
    prediction_time_moved,
    removed_by_later_recognition
from steps
