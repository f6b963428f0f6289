{#-
  24-hour windows of the lab and vital panel, sliding hourly: one row per ICU stay and window end
  (event_timestamp, from int_window_ends), and for each panel feature (seeds/panel_features.csv)
  <feature>_min, _max, _mean, _std (sample), _count and _last (the value with the latest charttime).

  Point in time: a measurement counts in the window (event_timestamp - 24 h, event_timestamp] by its
  charttime, and only if it was available (available_at: storetime, else charttime) by event_timestamp.
  A lab drawn at 09:40 and stored at 11:10 is in the windows ending 12:00 up to 09:00 the next day, and
  not in those ending 10:00 and 11:00 although it was drawn before them.
  _count 0 means the feature is missing in that window; its other statistics are then NULL (_std also
  with a single value).

  How it runs: a range join of window ends with measurements on stay_id, charttime in the window and
  available_at <= end. A measurement falls in windows ending on its charttime's calendar day or the next,
  so both sides also carry that day as a join key: the hash join then pairs each window only with about
  two days of its stay's measurements, which keeps the work linear in stay length (a join on stay_id
  alone grows with its square). Each feature is aggregated on its own and joined onto the grid, which
  DuckDB runs far faster than one aggregation with a filter per feature and column.
-#}
-- depends_on: {{ ref('panel_features') }}, {{ ref('int_panel_measurements') }}
{#- On DuckDB it is built a bucket of stays at a time (macros/materializations/external_in_stay_buckets.sql):
    in one query, 94,000 stays spilled more than 40 GB (29 aggregates of every window, joined at once). -#}
{{ config(
    materialized='external_in_stay_buckets' if target.type == 'duckdb' else 'external',
    location=var('feature_dir') ~ '/windows_24h.parquet',
    stay_buckets={'stays_of': 'int_window_ends', 'stays_per_bucket': var('stays_per_build_bucket')},
) }}

{%- set features = panel_feature_names() %}
{%- set day_zero = "cast('2000-01-01' as timestamp)" %}

with

window_ends as (
    select stay_id, event_timestamp from {{ ref('int_window_ends') }}
    where {{ in_stay_bucket('stay_id') }}
),

-- Each window end twice: with its own calendar day and the day before, the days its values lie on.
window_days as (
    select
        w.stay_id,
        w.event_timestamp,
        {{ dbt.datediff(day_zero, 'w.event_timestamp', 'day') }} - d.days_back as value_day
    from window_ends as w
    cross join (select 0 as days_back union all select 1 as days_back) as d
),

{% for feature in features %}
{{ feature }}_values as (
    select
        stay_id,
        value,
        charttime,
        available_at,
        {{ dbt.datediff(day_zero, 'charttime', 'day') }} as value_day,
        -- 'last' is the value with the latest charttime; ties go to the later available_at, then the larger value
        row_number() over (partition by stay_id order by charttime nulls last, available_at nulls last, value nulls last) as value_order
    from {{ ref('int_panel_measurements') }}
    where feature = '{{ feature }}' and {{ in_stay_bucket('stay_id') }}
),

{{ feature }}_windows as (
    select
        w.stay_id,
        w.event_timestamp,
        min(v.value) as min_value,
        max(v.value) as max_value,
        avg(v.value) as mean_value,
        stddev_samp(v.value) as std_value,
        count(*) as n_values,
        {{ arg_max('v.value', 'v.value_order') }} as last_value
    from window_days as w
    inner join {{ feature }}_values as v
        on v.stay_id = w.stay_id
        and v.value_day = w.value_day
        and v.charttime > {{ dbt.dateadd('hour', -24, 'w.event_timestamp') }}
        and v.charttime <= w.event_timestamp
        and v.available_at <= w.event_timestamp
    group by w.stay_id, w.event_timestamp
),

{% endfor %}
windows as (
    select
        cast(w.stay_id as {{ dbt.type_bigint() }}) as stay_id,
        w.event_timestamp,
        -- every value was available by the window's end (Feast's created timestamp: a row restated
        -- later would carry the time of its restatement)
        w.event_timestamp as created_timestamp
        {%- for feature in features %},
        {{ feature }}_w.min_value as {{ feature }}_min,
        {{ feature }}_w.max_value as {{ feature }}_max,
        {{ feature }}_w.mean_value as {{ feature }}_mean,
        {{ feature }}_w.std_value as {{ feature }}_std,
        coalesce({{ feature }}_w.n_values, 0) as {{ feature }}_count,
        {{ feature }}_w.last_value as {{ feature }}_last
        {%- endfor %}
    from window_ends as w
    {%- for feature in features %}
    left join {{ feature }}_windows as {{ feature }}_w
        on {{ feature }}_w.stay_id = w.stay_id and {{ feature }}_w.event_timestamp = w.event_timestamp
    {%- endfor %}
)

-- Not sorted: ordering 176 columns costs more than the aggregation (readers filter on stay_id).
select * from windows
