{#-
  Every ICU stay with the flags the cohort criteria use, so that the cohort, its flow and its excluded stays
  agree (docs/COHORT.md). onset_time is sepsis3's (mimic-code's first pair, retrospective: for reporting);
  recognition_time is when Sepsis-3 could first be known from stored rows (int_sepsis3_recognition), and
  T = prediction_time = recognition_time + var prediction_hours. prediction_time_at_onset is the former
  T = onset + prediction_hours, kept for cohort_flow's count of what the later T changed.

  Labels, for the stays alive and in the ICU at T: death within var mortality_horizon_days after T
  (deathtime, else patients.dod, a date: compared by date), the same counting a discharge to hospice within
  the horizon as a death, in-hospital death and ICU death.

  A live extract (docs/COHORT.md) holds stays still open at the time it was taken (extract_time,
  int_icu_stay_spans):
  their outcome is known only once the patient died in hospital, or was discharged and the horizon has
  passed by extract_time (outcome_known). A retrospective extract such as MIMIC-IV knows every outcome.
-#}
with stays as (
    select
        ie.stay_id,
        ie.subject_id,
        ie.hadm_id,
        ie.intime,
        ie.outtime,
        cast(p.anchor_age + (year(ie.intime) - p.anchor_year) as {{ dbt.type_bigint() }}) as age,
        p.anchor_year_group,
        p.dod,
        a.admittime,
        a.deathtime,
        a.dischtime,
        a.discharge_location,
        a.hospital_expire_flag,
        s.sofa_time,
        s.sofa_score as sofa_score_at_onset,
        r.recognition_time,
        r.sofa_time as recognised_sofa_time,
        x.extract_time
    from {{ ref('stg_icu_icustays') }} as ie
    inner join {{ ref('int_icu_stay_spans') }} as x on x.stay_id = ie.stay_id
    inner join {{ ref('stg_hosp_patients') }} as p on p.subject_id = ie.subject_id
    inner join {{ ref('stg_hosp_admissions') }} as a on a.hadm_id = ie.hadm_id
    left join {{ ref('sepsis3') }} as s on s.stay_id = ie.stay_id
    left join {{ ref('int_sepsis3_recognition') }} as r on r.stay_id = ie.stay_id
),
flagged as (
    select
        *,
        age >= {{ var('min_age') }} as is_adult,
        sofa_time is not null as meets_sepsis3,
        recognition_time is not null as is_recognised,
        greatest(sofa_time, intime) as onset_time,
        {{ dbt.dateadd('hour', var('prediction_hours'), 'greatest(sofa_time, intime)') }} as prediction_time_at_onset,
        {{ dbt.dateadd('hour', var('prediction_hours'), 'recognition_time') }} as prediction_time,
        row_number() over (partition by subject_id, (age >= {{ var('min_age') }} and sofa_time is not null)
                           order by sofa_time nulls last, stay_id) as sepsis3_rank
    from stays
),
ended as (
    select
        *,
        {%- for name, t in [('ended_before_prediction', 'prediction_time'),
                            ('ended_before_onset_prediction', 'prediction_time_at_onset')] %}
        coalesce(outtime <= {{ t }} or deathtime <= {{ t }} or dischtime <= {{ t }}, false) as {{ name }},
        {%- endfor %}
        coalesce(deathtime <= prediction_time or (hospital_expire_flag = 1 and dischtime <= prediction_time), false)
            as died_before_prediction,
        {{ dbt.dateadd('day', var('mortality_horizon_days'), 'prediction_time') }} as horizon_end
    from flagged
),
sofa_at_prediction as (
    -- the stored-only 24-hour SOFA of the last hour ending by T
    select
        e.stay_id,
        {{ arg_max('h.sofa_24hours', 'h.endtime') }} as sofa_score_at_prediction
    from ended as e
    inner join {{ ref('int_sofa_hourly_stored') }} as h on h.stay_id = e.stay_id and h.endtime <= e.prediction_time
    group by e.stay_id
),
labelled as (
    select
        e.*,
        sp.sofa_score_at_prediction,
        e.meets_sepsis3 and e.is_adult and e.sepsis3_rank = 1 as is_first_sepsis3_stay,
        e.ended_before_prediction and not e.died_before_prediction as left_icu_alive_before_prediction,
        e.ended_before_prediction and not e.died_before_prediction
            and coalesce(e.dischtime <= e.prediction_time, false) as left_hospital_alive_before_prediction,
        coalesce(e.hospital_expire_flag = 1 or e.deathtime is not null, false) as died_in_hospital,
        coalesce(e.hospital_expire_flag = 1 and e.deathtime <= {{ dbt.dateadd('hour', 6, 'e.outtime') }}, false)
            as died_in_icu,
        case when e.deathtime is not null then e.deathtime <= e.horizon_end
             else coalesce(e.dod <= cast(e.horizon_end as date), false) end as died_within_horizon
    from ended as e
    left join sofa_at_prediction as sp on sp.stay_id = e.stay_id
)
select
    *,
    died_within_horizon or coalesce(discharge_location = 'HOSPICE' and dischtime <= horizon_end, false)
        as died_or_hospice_within_horizon,
    extract_time is null or deathtime is not null or (dischtime is not null and horizon_end <= extract_time)
        as outcome_known
from labelled
