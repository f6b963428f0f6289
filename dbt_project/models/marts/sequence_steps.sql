{#-
  The steps of the lab and vital sequence the window BiLSTM reads (docs/WINDOWS.md): one row per ICU stay
  and whole hour (step_time), from (sequence_steps - 1) x sequence_stride_hours hours before the stay's
  first window end (or its history_start, when later) up to its last window end, and for each panel feature (seeds/panel_features.csv):

  - <feature>_value: the value known at step_time: of the measurements available (storetime, else
    charttime) by step_time, the one with the latest charttime (ties: later available_at, then larger
    value), however long ago it was charted, back to the stay's history_start (int_stay_history);
    NULL when none is known yet;
  - <feature>_hours_since: hours from that value's charttime to step_time (NULL when none); the value
    was observed in a step of s hours ending at step_time when this is < s.

  history_hours is the time from history_start to step_time. There is no row before history_start: such
  a step is padding (the stay's record had not begun), and Feast serves nothing for it.

  The model's sequence at time t is the S steps ending at the last whole hour at or before t, s hours
  apart. Feast serves it as S lag views over this file: from event_timestamp_lag<k> = step_time + k x s
  hours on, this row is the step k strides before the latest (feature_repo/). Every value obeys the
  storetime rule at its own step's time, so the whole sequence at t uses nothing stored after t.

  How it runs: a measurement can become the known value only at its available_at; per feature, the
  running latest-by-charttime value is computed over the measurements ordered by available_at, the last
  of each hour kept (the first step it reaches is the ceiling of its available_at, or the stay's first
  step when earlier), joined onto the step grid by equality and carried forward to the next change.
-#}
-- depends_on: {{ ref('panel_features') }}, {{ ref('int_panel_measurements') }}
{#- Parquet v2: its delta encoding stores the S - 1 lag keys (the step time plus constants) in a few bytes
    a row; v1 files spend three quarters of their bytes on them (measured at 30,000 stays: 685 MiB
    against 143 MiB). -#}
{#- On DuckDB it is built a bucket of stays at a time (macros/materializations/external_in_stay_buckets.sql):
    in one query, 94,000 stays spilled tens of GB. -#}
{{ config(
    materialized='external_in_stay_buckets' if target.type == 'duckdb' else 'external',
    location=var('feature_dir') ~ '/sequence_steps.parquet',
    options={'parquet_version': 'v2'},
    stay_buckets={'stays_of': 'int_stay_history', 'stays_per_bucket': var('stays_per_build_bucket')},
) }}

{%- set features = panel_feature_names() %}
{%- set steps = var('sequence_steps') | int %}
{%- set stride = var('sequence_stride_hours') | int %}
{%- set lead_hours = (steps - 1) * stride %}

with

stays as (
    select
        h.stay_id,
        h.history_start,
        {{ dbt.dateadd('hour', -lead_hours, dbt.dateadd('hour', 1, dbt.date_trunc('hour', 'h.intime'))) }}
            as first_step,
        {{ dbt.date_trunc('hour', 'h.ends_at') }} as last_step
    from {{ ref('int_stay_history') }} as h
    where {{ in_stay_bucket('h.stay_id') }}
),

-- the last offset computed once per stay (as int_window_ends)
step_span as (
    select stay_id, history_start, first_step, {{ dbt.datediff('first_step', 'last_step', 'hour') }} as last_offset
    from stays
),

step_grid as (
    select
        s.stay_id,
        s.history_start,
        {{ dbt.dateadd('hour', 'h.hour_offset', 's.first_step') }} as step_time
    from step_span as s
    inner join {{ ref('int_hour_offsets') }} as h
        on h.hour_offset <= s.last_offset
),

{% for feature in features %}
{{ feature }}_running as (
    select
        m.stay_id,
        m.available_at,
        -- the latest-charted value among those available by this row's available_at (peers included)
        {{ arg_max('m.value', 'm.value_order') }} over (partition by m.stay_id order by m.available_at nulls last) as value,
        max(m.charttime) over (partition by m.stay_id order by m.available_at nulls last) as charttime
    from (
        select
            stay_id,
            value,
            charttime,
            available_at,
            row_number() over (partition by stay_id order by charttime nulls last, available_at nulls last, value nulls last) as value_order
        from {{ ref('int_panel_measurements') }}
        where feature = '{{ feature }}' and {{ in_stay_bucket('stay_id') }}
    ) as m
),

{{ feature }}_changes as (
    select
        r.stay_id,
        greatest({{ ceil_to_hour('r.available_at') }}, s.first_step) as step_time,
        {{ arg_max('r.value', 'r.available_at') }} as value,
        max(r.charttime) as charttime
    from {{ feature }}_running as r
    inner join stays as s on s.stay_id = r.stay_id
    group by r.stay_id, greatest({{ ceil_to_hour('r.available_at') }}, s.first_step)
),

{% endfor %}
joined as (
    select
        g.stay_id,
        g.step_time,
        g.history_start
        {%- for feature in features %},
        {{ feature }}_c.value as {{ feature }}_changed_value,
        {{ feature }}_c.charttime as {{ feature }}_changed_charttime
        {%- endfor %}
    from step_grid as g
    {%- for feature in features %}
    left join {{ feature }}_changes as {{ feature }}_c
        on {{ feature }}_c.stay_id = g.stay_id and {{ feature }}_c.step_time = g.step_time
    {%- endfor %}
),

carried as (
    select
        stay_id,
        step_time,
        history_start
        {%- for feature in features %},
        {{ carry_forward(feature ~ "_changed_value") }} over carry as {{ feature }}_value,
        {{ carry_forward(feature ~ "_changed_charttime") }} over carry as {{ feature }}_charttime
        {%- endfor %}
    from joined
    window carry as (partition by stay_id order by step_time rows between unbounded preceding and current row)
)

select
    cast(stay_id as {{ dbt.type_bigint() }}) as stay_id,
    step_time as event_timestamp,
    -- every value was available by the step's time (Feast's created timestamp)
    step_time as created_timestamp
    {%- for lag in range(1, steps) %},
    {{ dbt.dateadd('hour', stride * lag, 'step_time') }} as event_timestamp_lag{{ lag }}
    {%- endfor %},
    cast({{ dbt.datediff('history_start', 'step_time', 'second') }} as double) / 3600 as history_hours
    {%- for feature in features %},
    {{ feature }}_value,
    cast({{ dbt.datediff(feature ~ '_charttime', 'step_time', 'second') }} as double) / 3600
        as {{ feature }}_hours_since
    {%- endfor %}
from carried
where step_time >= history_start
