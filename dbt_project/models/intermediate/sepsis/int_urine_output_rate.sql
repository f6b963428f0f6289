-- Urine output over the 24 h up to each charted output, with the hours it covers (mimic-code
-- urine_output and urine_output_rate). Irrigant put in (227488) counts negative. available_at: when the
-- last of the rows summed was stored.
with urine as (
    select
        stay_id,
        charttime,
        sum(case when itemid = 227488 and volume_ml > 0 then -1 * volume_ml else volume_ml end) as urineoutput,
        max({{ available_at('charttime', 'storetime') }}) as available_at
    from {{ ref('stg_icu_outputevents') }}
    where itemid in (226559, 226560, 226561, 226584, 226563, 226564, 226565, 226567, 226557, 226558, 227488, 227489)
    group by stay_id, charttime
),
heart_rate_span as (
    select ie.stay_id, min(ce.charttime) as intime_hr
    from {{ ref('int_icu_stay_spans') }} as ie
    inner join {{ ref('stg_icu_chartevents') }} as ce
        on ce.stay_id = ie.stay_id and ce.itemid = 220045
        and ce.charttime > {{ dbt.dateadd('month', -1, 'ie.intime') }} and ce.charttime < {{ dbt.dateadd('month', 1, 'ie.ends_at') }}
    group by ie.stay_id
),
timed as (
    select
        u.stay_id,
        u.charttime,
        u.urineoutput,
        u.available_at,
        {{ dbt.datediff('coalesce(lag(u.charttime) over (partition by u.stay_id order by u.charttime nulls last), t.intime_hr)',
                         'u.charttime', 'minute') }} as minutes_since_last
    from heart_rate_span as t
    inner join urine as u on u.stay_id = t.stay_id
)
select
    io.stay_id,
    io.charttime,
    sum(s.urineoutput) as urineoutput_24hr,
    round(round(cast(sum(s.minutes_since_last) / 60.0 as decimal(38, 9)), 6), 2) as uo_tm_24hr,
    max(s.available_at) as available_at
from timed as io
left join timed as s
    on s.stay_id = io.stay_id and io.charttime >= s.charttime and io.charttime <= {{ dbt.dateadd('hour', 23, 's.charttime') }}
group by io.stay_id, io.charttime
