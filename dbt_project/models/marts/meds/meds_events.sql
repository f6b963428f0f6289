{#-
  The cohort's patients as MEDS events (Medical Event Data Standard 0.4; docs/MEDS.md): one row per event,
  subject_id, time, code, numeric_value, text_value, each event at the time it existed in the record.
  `sepsis-fusion export meds` writes it as the MEDS dataset's data/{train,tuning,held_out} shards.

  - Labs and vitals at available_at (storetime, else charttime, never before charttime), as the features
    read them; codes LAB//<itemid>//<unit> and CHART//<itemid>//<unit> (MIMIC-IV's MEDS convention).
  - Diagnoses are coded after discharge: DIAGNOSIS//ICD//<version>//<code> at the admission's dischtime,
    never while the admission is open.
  - Prescriptions at their starttime; admissions, discharges and ICU transfers at their times; MEDS_DEATH
    at the hospital deathtime, else the date of death (patients.dod, at midnight, or at the discharge when
    the patient left hospital that day); MEDS_BIRTH on 1 January
    of anchor_year - anchor_age; GENDER//<g> static (no time).
  - Radiology reports (the notes the model reads; never discharge summaries) at available_at, the report
    in text_value.
  - SEPSIS3_RECOGNISED at each cohort stay's recognition_time: the trigger of the ACES task
    (sepsis-fusion export meds writes the config); T is recognition + var prediction_hours.
  Every patient with a cohort stay, all of the patient's rows (earlier admissions too), as MEDS asks.
-#}
{{ config(materialized='view', tags=['meds'], enabled=(target.type == 'duckdb')) }}

with

subjects as (
    select distinct subject_id from {{ ref('cohort') }}
),

admissions as (
    select a.* from {{ ref('stg_hosp_admissions') }} as a inner join subjects as s on s.subject_id = a.subject_id
),

deaths as (
    -- a death known by its date only (after discharge) is placed at midnight, unless the patient was
    -- discharged that day: then at the discharge, so that it never precedes a same-day discharge or T
    select
        p.subject_id,
        coalesce(
            min(a.deathtime),
            greatest(
                cast(p.dod as timestamp),
                coalesce(max(case when cast(a.dischtime as date) = p.dod then a.dischtime end), cast(p.dod as timestamp))
            )
        ) as time
    from {{ ref('stg_hosp_patients') }} as p
    inner join subjects as s on s.subject_id = p.subject_id
    left join admissions as a on a.subject_id = p.subject_id
    group by p.subject_id, p.dod
),

events as (
    select
        p.subject_id,
        cast(null as timestamp) as time,
        'GENDER//' || p.gender as code,
        cast(null as float) as numeric_value,
        cast(null as varchar) as text_value
    from {{ ref('stg_hosp_patients') }} as p inner join subjects as s on s.subject_id = p.subject_id
    where p.gender is not null

    union all
    select
        p.subject_id,
        make_timestamp(cast(p.anchor_year - p.anchor_age as bigint), 1, 1, 0, 0, 0),
        'MEDS_BIRTH',
        null,
        null
    from {{ ref('stg_hosp_patients') }} as p inner join subjects as s on s.subject_id = p.subject_id

    union all
    select subject_id, time, 'MEDS_DEATH', null, null from deaths where time is not null

    union all
    select subject_id, admittime, 'HOSPITAL_ADMISSION//' || coalesce(admission_type, 'UNK'), null, null
    from admissions

    union all
    select subject_id, dischtime, 'HOSPITAL_DISCHARGE//' || coalesce(discharge_location, 'UNK'), null, null
    from admissions where dischtime is not null

    union all
    select i.subject_id, i.intime, 'ICU_ADMISSION//' || coalesce(i.first_careunit, 'UNK'), null, null
    from {{ ref('stg_icu_icustays') }} as i inner join subjects as s on s.subject_id = i.subject_id

    union all
    select i.subject_id, i.outtime, 'ICU_DISCHARGE//' || coalesce(i.last_careunit, 'UNK'), null, null
    from {{ ref('stg_icu_icustays') }} as i inner join subjects as s on s.subject_id = i.subject_id
    where i.outtime is not null

    union all
    select
        l.subject_id,
        {{ available_at('l.charttime', 'l.storetime') }},
        'LAB//' || cast(l.itemid as varchar) || '//' || coalesce(l.valueuom, 'UNK'),
        cast(l.valuenum as float),
        case when l.valuenum is null then l.value_text end
    from {{ ref('stg_hosp_labevents') }} as l inner join subjects as s on s.subject_id = l.subject_id
    where l.charttime is not null

    union all
    select
        c.subject_id,
        {{ available_at('c.charttime', 'c.storetime') }},
        'CHART//' || cast(c.itemid as varchar) || '//' || coalesce(c.valueuom, 'UNK'),
        cast(c.valuenum as float),
        case when c.valuenum is null then c.value_text end
    from {{ ref('stg_icu_chartevents') }} as c inner join subjects as s on s.subject_id = c.subject_id
    where c.charttime is not null

    union all
    select
        d.subject_id,
        a.dischtime,
        'DIAGNOSIS//ICD//' || cast(d.icd_version as varchar) || '//' || trim(d.icd_code),
        null,
        null
    from {{ ref('stg_hosp_diagnoses_icd') }} as d
    inner join admissions as a on a.hadm_id = d.hadm_id
    where a.dischtime is not null and d.icd_code is not null

    union all
    select p.subject_id, p.starttime, 'MEDICATION//' || p.drug, null, null
    from {{ ref('stg_hosp_prescriptions') }} as p inner join subjects as s on s.subject_id = p.subject_id
    where p.starttime is not null and p.drug is not null

    union all
    select
        n.subject_id,
        {{ available_at('n.charttime', 'n.storetime') }},
        'NOTE//RADIOLOGY',
        null,
        n.note_text
    from {{ ref('stg_note_radiology') }} as n inner join subjects as s on s.subject_id = n.subject_id
    where n.charttime is not null and (n.note_type is null or n.note_type not in ('DS', 'DA'))

    union all
    select subject_id, recognition_time, 'SEPSIS3_RECOGNISED', null, null
    from {{ ref('cohort') }}
    where recognition_time is not null
)

select
    cast(subject_id as bigint) as subject_id,
    time,
    code,
    numeric_value,
    text_value
from events
