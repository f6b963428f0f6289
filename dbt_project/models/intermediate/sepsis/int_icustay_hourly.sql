-- One row per stay and hour from 24 h before the first heart rate to the last one; row `hr` covers
-- (endtime - 1 h, endtime]. Hour counts are clock-hour boundaries, as mimic-code's icustay_hourly.
with bounds as (
    select
        stay_id,
        case when date_trunc('hour', intime_hr) = intime_hr then intime_hr
             else date_trunc('hour', intime_hr) + interval 1 hour end as first_endtime,
        date_diff('hour', intime_hr, outtime_hr) as last_hr
    from {{ ref('int_icustay_times') }}
    where intime_hr is not null
)
select
    stay_id,
    hr,
    first_endtime + to_hours(hr) as endtime
from bounds, unnest(generate_series(-24, last_hr)) as t(hr)
