-- How many ICU stays each cohort criterion removed, in the order they apply.
with steps as (
    select 1 as step, 'ICU stays' as criterion, count(*) as stays from {{ ref('int_cohort_candidates') }}
    union all
    select 2, 'age >= {{ var("min_age") }}', count(*) filter (where is_adult) from {{ ref('int_cohort_candidates') }}
    union all
    select 3, 'meets Sepsis-3', count(*) filter (where is_adult and meets_sepsis3) from {{ ref('int_cohort_candidates') }}
    union all
    select 4, 'first Sepsis-3 stay of the patient', count(*) filter (where is_first_sepsis3_stay)
    from {{ ref('int_cohort_candidates') }}
    union all
    select 5, 'still in the ICU and alive at onset + {{ var("prediction_hours") }} h',
           count(*) filter (where is_first_sepsis3_stay and not ended_before_prediction)
    from {{ ref('int_cohort_candidates') }}
)
select
    step,
    criterion,
    stays,
    coalesce(lag(stays) over (order by step) - stays, 0) as removed
from steps
