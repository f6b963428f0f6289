-- The cohort flow accounts for every stay and every in-hospital death (docs/COHORT.md): each step keeps what
-- the one before kept less what it removed; the last step's removed stays are exactly those that died before
-- T and those that left the ICU alive before T, and so are their deaths; the last step keeps the cohort.
with flow as (
    select *, lag(stays) over (order by step) as before, lag(in_hospital_deaths) over (order by step) as deaths_before
    from {{ ref('cohort_flow') }}
),
last_step as (
    select * from flow where step = (select max(step) from flow)
)
select 'step ' || cast(step as {{ dbt.type_string() }}) || ' does not add up' as problem
from flow
where before is not null and (before - removed <> stays or deaths_before - removed_in_hospital_deaths <> in_hospital_deaths)
union all
select 'the last step splits its removed stays wrongly'
from last_step
where removed <> died_before_prediction + left_icu_alive_before_prediction
   or removed_in_hospital_deaths <> died_before_prediction + left_icu_alive_in_hospital_deaths
   or left_hospital_alive_before_prediction > left_icu_alive_before_prediction
union all
select 'the last step keeps ' || cast(stays as {{ dbt.type_string() }}) || ' stays, the cohort has another number'
from last_step
where stays <> (select count(*) from {{ ref('cohort') }})
union all
select 'cohort_excluded does not hold the stays removed after step 4'
from last_step
where (select count(*) from {{ ref('cohort_excluded') }})
      <> (select stays from flow where step = 4) - stays
