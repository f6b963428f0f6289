{#-
  Which notes each 24-hour window holds, on the same hourly grid as windows_24h: a note belongs to the
  window ending at event_timestamp when it was charted in (event_timestamp - 24 h, event_timestamp] and
  existed in the record (available_at) by event_timestamp. The embedding pipeline pools the note vectors
  of each window by this table; a window with no row here has no note (its mask is 0).
-#}
{{ config(materialized='external', location=var('feature_dir') ~ '/note_windows.parquet') }}

select
    w.stay_id,
    w.event_timestamp,
    n.note_id,
    n.charttime,
    n.available_at
from {{ ref('int_window_ends') }} as w
inner join {{ ref('notes_to_embed') }} as n
    on n.stay_id = w.stay_id
    and n.charttime > w.event_timestamp - interval 24 hour
    and n.charttime <= w.event_timestamp
    and n.available_at <= w.event_timestamp
order by w.stay_id, w.event_timestamp, n.available_at, n.note_id
