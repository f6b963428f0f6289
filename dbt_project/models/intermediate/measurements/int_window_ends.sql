{#-
  The hourly grid of the 24-hour windows: one row per ICU stay and window end. Window ends are every
  whole hour after intime (an intime of 10:00 or 10:20 gives 11:00 first) up to the last whole hour at or
  before outtime (for a stay still open in a live extract, the extract's time: int_icu_stay_spans); a stay shorter than that has none. The window ending at event_timestamp covers
  (event_timestamp - 24 h, event_timestamp].
-#}
{{ config(materialized='table') }}

with

ends as (
    select
        stay_id,
        subject_id,
        {{ dbt.dateadd('hour', 1, dbt.date_trunc('hour', 'intime')) }} as first_end,
        {{ dbt.date_trunc('hour', 'ends_at') }} as last_end
    from {{ ref('int_icu_stay_spans') }}
),

-- the last offset computed once per stay: Spark evaluates a join condition on every (stay, offset) pair
stays as (
    select stay_id, subject_id, first_end, {{ dbt.datediff('first_end', 'last_end', 'hour') }} as last_offset
    from ends
)

select
    s.stay_id,
    s.subject_id,
    {{ dbt.dateadd('hour', 'h.hour_offset', 's.first_end') }} as event_timestamp
from stays as s
inner join {{ ref('int_hour_offsets') }} as h
    on h.hour_offset <= s.last_offset
