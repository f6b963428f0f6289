-- Point-in-time rule for notes: for a cohort stay, no window up to its prediction time holds a note that
-- was not in the record (available_at) by the window's end, let alone by the prediction time.
select nw.stay_id, nw.event_timestamp, nw.note_id
from {{ ref('note_windows') }} as nw
inner join {{ ref('cohort') }} as c on c.stay_id = nw.stay_id
where nw.event_timestamp <= c.prediction_time
  and (nw.available_at > nw.event_timestamp or nw.available_at > c.prediction_time)
