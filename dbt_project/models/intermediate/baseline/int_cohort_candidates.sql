-- Every ICU stay with the flags the cohort criteria use, so that the cohort and its flow table agree.
-- onset_time is sepsis3's (mimic-code's first pair); T = prediction_time counts from recognition_time, when
-- the first pair to be recognised was known (int_sepsis3_recognition). prediction_time_at_onset is the
-- former T = onset + prediction_hours, kept for cohort_flow's counts of what the later T changed.
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
        a.deathtime,
        a.dischtime,
        a.hospital_expire_flag,
        s.sofa_time,
        s.sofa_score as sofa_score_at_onset,
        r.recognition_time
    from {{ ref('stg_icu_icustays') }} as ie
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
        greatest(sofa_time, intime) as onset_time,
        {{ dbt.dateadd('hour', var('prediction_hours'), 'greatest(sofa_time, intime)') }} as prediction_time_at_onset,
        {{ dbt.dateadd('hour', var('prediction_hours'), 'recognition_time') }} as prediction_time,
        row_number() over (partition by subject_id, (age >= {{ var('min_age') }} and sofa_time is not null)
                           order by sofa_time nulls last, stay_id) as sepsis3_rank
    from stays
),
sofa_at_prediction as (
    -- the 24-hour SOFA of the last hour ending by T
    select
        f.stay_id,
        {{ arg_max('h.sofa_24hours', 'h.endtime') }} as sofa_score_at_prediction
    from flagged as f
    inner join {{ ref('int_sofa_hourly') }} as h on h.stay_id = f.stay_id and h.endtime <= f.prediction_time
    group by f.stay_id
)
select
    f.*,
    sp.sofa_score_at_prediction,
    f.meets_sepsis3 and f.is_adult and f.sepsis3_rank = 1 as is_first_sepsis3_stay,
    {%- for name, t in [('ended_before_prediction', 'f.prediction_time'),
                        ('ended_before_onset_prediction', 'f.prediction_time_at_onset')] %}
    coalesce(f.outtime <= {{ t }} or f.deathtime <= {{ t }} or f.dischtime <= {{ t }}, false) as {{ name }},
    {%- endfor %}
    coalesce(f.hospital_expire_flag = 1, false) as died_in_hospital,
    coalesce(f.hospital_expire_flag = 1 and f.deathtime <= {{ dbt.dateadd('hour', 6, 'f.outtime') }}, false) as died_in_icu,
    coalesce(f.dod <= {{ dbt.dateadd('day', var('mortality_horizon_days'), 'cast(f.onset_time as date)') }}, false)
        as died_within_horizon
from flagged as f
left join sofa_at_prediction as sp on sp.stay_id = f.stay_id
