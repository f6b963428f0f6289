{#-
  notes_to_embed holds no discharge summary (by note_id or note type) and no note available before it
  was charted, and every note lies in its stay: same admission, charted within [intime, outtime].
  Returns the offending rows with the reason.
-#}

with

notes as (
    select * from {{ ref('notes_to_embed') }}
),

problems as (
    select n.note_id, n.stay_id, 'discharge summary' as problem
    from notes as n
    where n.note_type in ('DS', 'DA')
        or n.note_id in (select note_id from {{ ref('stg_note_discharge') }})

    union all

    select n.note_id, n.stay_id, 'available before charted' as problem
    from notes as n
    where n.available_at < n.charttime

    union all

    select n.note_id, n.stay_id, 'outside its stay' as problem
    from notes as n
    left join {{ ref('stg_icu_icustays') }} as s on s.stay_id = n.stay_id
    where s.stay_id is null
        or s.hadm_id <> n.hadm_id
        or n.charttime < s.intime
        or n.charttime > s.outtime
)

select * from problems
