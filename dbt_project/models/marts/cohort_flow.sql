{{ config(materialized='external', location=var('feature_dir') ~ '/cohort_flow.parquet') }}
-- How many ICU stays each cohort criterion keeps and removes, in the order they apply, with the in-hospital
-- deaths among them, so that the flow accounts for every death. The last step (still in the ICU and alive at
-- T) splits the stays it removes: died before T, or left the ICU alive before T (of them, how many had left
-- the hospital too, and how many died later in the hospital). It also counts what T = recognition + {{
-- var('prediction_hours') }} h changed against T = onset + {{ var('prediction_hours') }} h: kept stays whose
-- T moved later, and stays the former rule would have kept but that ended before the later T.
with candidates as (
    select * from {{ ref('int_cohort_candidates') }}
),
steps as (
    {%- set steps = [
        (1, 'ICU stays', 'true'),
        (2, 'age >= ' ~ var('min_age'), 'is_adult'),
        (3, 'meets Sepsis-3 (mimic-code)', 'is_adult and meets_sepsis3'),
        (4, 'first Sepsis-3 stay of the patient', 'is_first_sepsis3_stay'),
        (5, 'Sepsis-3 recognised from stored rows', 'is_first_sepsis3_stay and is_recognised'),
        (6, 'still in the ICU and alive at T = recognition + ' ~ var('prediction_hours') ~ ' h',
            'is_first_sepsis3_stay and is_recognised and not ended_before_prediction'),
    ] %}
    {%- for step, criterion, kept in steps %}
    select
        {{ step }} as step,
        '{{ criterion }}' as criterion,
        count(*) filter (where {{ kept }}) as stays,
        count(*) filter (where {{ kept }} and died_in_hospital) as in_hospital_deaths,
        {%- if step == 6 %}
        {%- set removed = 'is_first_sepsis3_stay and is_recognised and ended_before_prediction' %}
        count(*) filter (where {{ removed }} and died_before_prediction) as died_before_prediction,
        count(*) filter (where {{ removed }} and left_icu_alive_before_prediction) as left_icu_alive_before_prediction,
        count(*) filter (where {{ removed }} and left_icu_alive_before_prediction and died_in_hospital)
            as left_icu_alive_in_hospital_deaths,
        count(*) filter (where {{ removed }} and left_hospital_alive_before_prediction)
            as left_hospital_alive_before_prediction,
        count(*) filter (where {{ kept }} and prediction_time > prediction_time_at_onset) as prediction_time_moved,
        count(*) filter (where is_first_sepsis3_stay and is_recognised and not ended_before_onset_prediction
                               and ended_before_prediction) as removed_by_later_recognition
        {%- else %}
        {%- for column in ['died_before_prediction', 'left_icu_alive_before_prediction',
                           'left_icu_alive_in_hospital_deaths', 'left_hospital_alive_before_prediction',
                           'prediction_time_moved', 'removed_by_later_recognition'] %}
        cast(null as {{ dbt.type_bigint() }}) as {{ column }}{{ ',' if not loop.last }}
        {%- endfor %}
        {%- endif %}
    from candidates
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
)
select
    step,
    criterion,
    stays,
    in_hospital_deaths,
    coalesce(lag(stays) over (order by step) - stays, 0) as removed,
    coalesce(lag(in_hospital_deaths) over (order by step) - in_hospital_deaths, 0) as removed_in_hospital_deaths,
    died_before_prediction,
    left_icu_alive_before_prediction,
    left_icu_alive_in_hospital_deaths,
    left_hospital_alive_before_prediction,
    prediction_time_moved,
    removed_by_later_recognition
from steps
