-- One row per stay and hour from 24 h before the first heart rate to the last one; row `hr` covers
-- (endtime - 1 h, endtime]. Hour counts are clock-hour boundaries, as mimic-code's icustay_hourly.
with bounds as (
    select
        stay_id,
        {{ ceil_to_hour('intime_hr') }} as first_endtime,
        {{ dbt.datediff('intime_hr', 'outtime_hr', 'hour') }} as last_hr
    from {{ ref('int_icustay_times') }}
    where intime_hr is not null
)
select
    b.stay_id,
    h.hour_offset - 24 as hr,
    {{ dbt.dateadd('hour', 'h.hour_offset - 24', 'b.first_endtime') }} as endtime
from bounds as b
inner join {{ ref('int_hour_offsets') }} as h on h.hour_offset <= b.last_hr + 24
