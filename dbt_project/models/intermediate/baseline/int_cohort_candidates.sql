-- Every ICU stay with the flags the cohort criteria use, so that the cohort and its flow table agree.
with stays as (
    select
        ie.stay_id,
        ie.subject_id,
        ie.hadm_id,
        ie.intime,
        ie.outtime,
        p.anchor_age + (year(ie.intime) - p.anchor_year) as age,
        p.dod,
        a.deathtime,
        a.dischtime,
        a.hospital_expire_flag,
        s.sofa_time,
        s.sofa_score as sofa_score_at_onset
    from {{ ref('stg_icu_icustays') }} as ie
    inner join {{ ref('stg_hosp_patients') }} as p on p.subject_id = ie.subject_id
    inner join {{ ref('stg_hosp_admissions') }} as a on a.hadm_id = ie.hadm_id
    left join {{ ref('sepsis3') }} as s on s.stay_id = ie.stay_id
),
flagged as (
    select
        *,
        age >= {{ var('min_age') }} as is_adult,
        sofa_time is not null as meets_sepsis3,
        greatest(sofa_time, intime) as onset_time,
        greatest(sofa_time, intime) + to_hours({{ var('prediction_hours') }}) as prediction_time,
        row_number() over (partition by subject_id, (age >= {{ var('min_age') }} and sofa_time is not null)
                           order by sofa_time, stay_id) as sepsis3_rank
    from stays
)
select
    *,
    meets_sepsis3 and is_adult and sepsis3_rank = 1 as is_first_sepsis3_stay,
    coalesce(outtime <= prediction_time or deathtime <= prediction_time or dischtime <= prediction_time, false)
        as ended_before_prediction,
    coalesce(hospital_expire_flag = 1, false) as died_in_hospital,
    coalesce(hospital_expire_flag = 1 and deathtime <= outtime + interval 6 hour, false) as died_in_icu,
    coalesce(dod <= cast(greatest(sofa_time, intime) as date) + to_days({{ var('mortality_horizon_days') }}), false)
        as died_within_horizon
from flagged
