{#-
  OASIS (Oxford Acute Severity of Illness Score, Johnson et al. 2013) at the prediction time T, with mimic-code's
  score/oasis.sql components and points but over the 24 hours before T instead of the first ICU day, from
  values stored by T only (docs/COHORT.md): pre-ICU length of stay, age, the lowest GCS (int_gcs), heart
  rate, mean arterial pressure, respiratory rate and temperature (lowest and highest), urine output summed
  over the window, invasive ventilation charted in the window, and elective surgery (an elective admission
  under a surgical service before ICU admission + 1 day and by T). A missing component scores 0, as in
  mimic-code. Vitals and urine come from the project's panel (int_panel_measurements), whose valid ranges
  differ a little from mimic-code's vitalsign (temperature 10-50 C after converting F, where mimic-code
  takes 70-120 F; urine rows clipped at +-5000 mL); age is the cohort's (at ICU admission). For the stays
  of the cohort (first Sepsis-3 stays still in the ICU and alive at T).
-#}
with stays as (
    select
        stay_id,
        hadm_id,
        intime,
        admittime,
        age,
        prediction_time,
        {{ dbt.dateadd('hour', -24, 'prediction_time') }} as window_start
    from {{ ref('int_cohort_candidates') }}
    where is_first_sepsis3_stay and is_recognised and not ended_before_prediction
),
vitals as (
    select
        s.stay_id,
        {%- for feature in ['heart_rate', 'map', 'resp_rate', 'temperature'] %}
        min(case when m.feature = '{{ feature }}' then m.value end) as {{ feature }}_min,
        max(case when m.feature = '{{ feature }}' then m.value end) as {{ feature }}_max,
        {%- endfor %}
        sum(case when m.feature = 'urine_output' then m.value end) as urineoutput
    from stays as s
    inner join {{ ref('int_panel_measurements') }} as m
        on m.stay_id = s.stay_id
        and m.charttime > s.window_start and m.charttime <= s.prediction_time
        and m.available_at <= s.prediction_time
        and m.feature in ('heart_rate', 'map', 'resp_rate', 'temperature', 'urine_output')
    group by s.stay_id
),
gcs as (
    select s.stay_id, min(g.gcs) as gcs_min
    from stays as s
    inner join {{ ref('int_gcs') }} as g
        on g.stay_id = s.stay_id
        and g.charttime > s.window_start and g.charttime <= s.prediction_time
        and g.available_at <= s.prediction_time
    group by s.stay_id
),
vent as (
    -- invasive ventilation charted in the window and stored by T (mimic-code: an episode overlapping it)
    select distinct s.stay_id
    from stays as s
    inner join {{ ref('int_ventilation_status') }} as v
        on v.stay_id = s.stay_id and v.ventilation_status = 'InvasiveVent'
        and v.charttime > s.window_start and v.charttime <= s.prediction_time
        and v.available_at <= s.prediction_time
),
surgical as (
    select
        s.stay_id,
        max(case when lower(se.curr_service) like '%surg%' or se.curr_service = 'ORTHO' then 1 else 0 end) as surgical
    from stays as s
    left join {{ ref('stg_hosp_services') }} as se
        on se.hadm_id = s.hadm_id
        and se.transfertime < {{ dbt.dateadd('day', 1, 's.intime') }}
        and se.transfertime <= s.prediction_time
    group by s.stay_id
),
components as (
    select
        s.stay_id,
        {{ dbt.datediff('s.admittime', 's.intime', 'minute') }} as preiculos,
        s.age,
        g.gcs_min,
        v.heart_rate_min, v.heart_rate_max, v.map_min, v.map_max, v.resp_rate_min, v.resp_rate_max,
        v.temperature_min, v.temperature_max, v.urineoutput,
        case when vent.stay_id is not null then 1 else 0 end as mechvent,
        case when a.admission_type = 'ELECTIVE' and sf.surgical = 1 then 1
             when a.admission_type is null or sf.surgical is null then null
             else 0 end as electivesurgery
    from stays as s
    inner join {{ ref('stg_hosp_admissions') }} as a on a.hadm_id = s.hadm_id
    left join vitals as v on v.stay_id = s.stay_id
    left join gcs as g on g.stay_id = s.stay_id
    left join vent on vent.stay_id = s.stay_id
    left join surgical as sf on sf.stay_id = s.stay_id
),
scored as (
    select
        *,
        case when preiculos is null then null when preiculos < 10.2 then 5 when preiculos < 297 then 3
             when preiculos < 1440 then 0 when preiculos < 18708 then 2 else 1 end as preiculos_score,
        case when age is null then null when age < 24 then 0 when age <= 53 then 3 when age <= 77 then 6
             when age <= 89 then 9 when age >= 90 then 7 else 0 end as age_score,
        case when gcs_min is null then null when gcs_min <= 7 then 10 when gcs_min < 14 then 4
             when gcs_min = 14 then 3 else 0 end as gcs_score,
        case when heart_rate_max is null then null when heart_rate_max > 125 then 6
             when heart_rate_min < 33 then 4 when heart_rate_max >= 107 and heart_rate_max <= 125 then 3
             when heart_rate_max >= 89 and heart_rate_max <= 106 then 1 else 0 end as heart_rate_score,
        case when map_min is null then null when map_min < 20.65 then 4 when map_min < 51 then 3
             when map_max > 143.44 then 3 when map_min >= 51 and map_min < 61.33 then 2 else 0 end as mbp_score,
        case when resp_rate_min is null then null when resp_rate_min < 6 then 10 when resp_rate_max > 44 then 9
             when resp_rate_max > 30 then 6 when resp_rate_max > 22 then 1 when resp_rate_min < 13 then 1
             else 0 end as resp_rate_score,
        case when temperature_max is null then null when temperature_max > 39.88 then 6
             when temperature_min >= 33.22 and temperature_min <= 35.93 then 4
             when temperature_max >= 33.22 and temperature_max <= 35.93 then 4
             when temperature_min < 33.22 then 3
             when temperature_min > 35.93 and temperature_min <= 36.39 then 2
             when temperature_max >= 36.89 and temperature_max <= 39.88 then 2 else 0 end as temp_score,
        case when urineoutput is null then null when urineoutput < 671.09 then 10
             when urineoutput > 6896.80 then 8 when urineoutput >= 671.09 and urineoutput <= 1426.99 then 5
             when urineoutput >= 1427.00 and urineoutput <= 2544.14 then 1 else 0 end as urineoutput_score,
        case when mechvent = 1 then 9 else 0 end as mechvent_score,
        case when electivesurgery is null then null when electivesurgery = 1 then 0 else 6 end
            as electivesurgery_score
    from components
)
select
    *,
    coalesce(age_score, 0) + coalesce(preiculos_score, 0) + coalesce(gcs_score, 0) + coalesce(heart_rate_score, 0)
        + coalesce(mbp_score, 0) + coalesce(resp_rate_score, 0) + coalesce(temp_score, 0)
        + coalesce(urineoutput_score, 0) + mechvent_score + coalesce(electivesurgery_score, 0) as oasis
from scored
