{#-
  The in-stay notes the note modality embeds: radiology reports charted during an ICU stay (same
  hadm_id, charttime in [intime, outtime]), with the time each existed in the record.

  - Discharge summaries are never features: they are written at discharge and state the outcome. They
    live in stg_note_discharge, which this model does not read; note types of discharge summaries
    ('DS', and 'DA' for their addenda) are also kept out should one be filed among radiology.
  - available_at is storetime, else charttime, and never before charttime (a storetime before the
    charttime is a recording error; the note then counts from its charttime).
  - sequence_slot: the note's number in its stay (by available_at, then note_id, from 0) modulo
    note_sequence_length (N). Feast serves slot j from the file of slot j (sepsis-fusion embed), so as
    of any time the N slots hold the last N notes available then, each note stored once.
  - Empty when MIMIC-IV-Note is absent. dbt-duckdb then writes one all-NULL row to the Parquet file (its
    way of keeping the schema); readers skip rows without note_id.
-#}
{{ config(
    materialized='external',
    location=var('feature_dir') ~ '/notes_to_embed.parquet',
) }}

with

notes as (
    select * from {{ ref('stg_note_radiology') }}
    where note_type is null or note_type not in ('DS', 'DA')
),

stays as (
    select stay_id, hadm_id, intime, ends_at from {{ ref('int_icu_stay_spans') }}
)

select
    n.note_id,
    cast(s.stay_id as {{ dbt.type_bigint() }}) as stay_id,
    cast(n.subject_id as {{ dbt.type_bigint() }}) as subject_id,
    cast(n.hadm_id as {{ dbt.type_bigint() }}) as hadm_id,
    n.note_type,
    n.charttime,
    {{ available_at('n.charttime', 'n.storetime') }} as available_at,
    cast(
        mod(
            row_number() over (
                partition by s.stay_id order by {{ available_at('n.charttime', 'n.storetime') }} nulls last, n.note_id nulls last
            ) - 1,
            {{ var('note_sequence_length') }}
        ) as integer
    ) as sequence_slot,
    n.note_text
from notes as n
inner join stays as s
    on s.hadm_id = n.hadm_id
    and n.charttime >= s.intime
    and n.charttime <= s.ends_at
order by stay_id, available_at, n.note_id
