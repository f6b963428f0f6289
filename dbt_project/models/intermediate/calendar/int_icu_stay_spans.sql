{#-
  Every ICU stay with the time its record reaches (ends_at): its outtime, or, for a stay still open in a live
  extract (no outtime yet), the time the extract was taken. extract_time is var extract_time when set; else,
  when some stay is open, the latest time the extract holds (admissions, ICU stays, charted vitals); else null
  (a retrospective extract such as MIMIC-IV, every stay ended). The grids (int_window_ends, sequence_steps)
  and the in-stay rules of labs, notes and antibiotics read ends_at, so an open stay has its hours so far.
-#}
{{ config(materialized='table') }}

with

{%- if var('extract_time', none) %}
extract as (
    select cast('{{ var("extract_time") }}' as timestamp) as extract_time
),
{%- else %}
icu as (
    select
        count(*) filter (where outtime is null) as open_stays,
        max(intime) as last_in,
        max(outtime) as last_out
    from {{ ref('stg_icu_icustays') }}
),
hosp as (
    select max(admittime) as last_admit, max(dischtime) as last_discharge from {{ ref('stg_hosp_admissions') }}
),
charted as (
    select max(charttime) as last_charted from {{ ref('stg_icu_chartevents') }}
),
extract as (
    select
        case when icu.open_stays > 0 then greatest(
            icu.last_in,
            coalesce(icu.last_out, icu.last_in),
            coalesce(hosp.last_admit, icu.last_in),
            coalesce(hosp.last_discharge, icu.last_in),
            coalesce(charted.last_charted, icu.last_in)
        ) end as extract_time
    from icu
    cross join hosp
    cross join charted
),
{%- endif %}

stays as (
    select stay_id, subject_id, hadm_id, intime, outtime from {{ ref('stg_icu_icustays') }}
)

select
    s.stay_id,
    s.subject_id,
    s.hadm_id,
    s.intime,
    s.outtime,
    coalesce(s.outtime, x.extract_time) as ends_at,
    x.extract_time
from stays as s
cross join extract as x
