{#-
  Point in time: every window counts exactly the values charted in it AND available by its end.

  Recounted independently of the model, as a running sum over time per stay and feature: a value enters
  at the first whole hour at or after its available_at and leaves at the first whole hour at or after
  its charttime plus 24 h (a value stored a day or more after its draw never enters). A model that
  counted by charttime alone (ignoring available_at) counts values that were still pending at the
  window end and fails here, as does one that drops values it should count. Returns the disagreeing
  windows.
-#}
-- depends_on: {{ ref('panel_features') }}, {{ ref('windows_24h') }}
{%- set features = panel_feature_names() %}

with

measurements as (
    select
        stay_id,
        feature,
        {{ ceil_to_hour('available_at') }} as enters_at,
        {{ dbt.dateadd('hour', 24, ceil_to_hour('charttime')) }} as leaves_at
    from {{ ref('int_panel_measurements') }}
),

timeline as (
    select stay_id, feature, enters_at as at_time, 0 as is_window_end, 1 as delta
    from measurements where enters_at < leaves_at
    union all
    select stay_id, feature, leaves_at as at_time, 0 as is_window_end, -1 as delta
    from measurements where enters_at < leaves_at
    union all
    select w.stay_id, f.feature, w.event_timestamp as at_time, 1 as is_window_end, 0 as delta
    from {{ ref('int_window_ends') }} as w
    cross join {{ ref('panel_features') }} as f
),

-- Events at a window end apply to it: they sort before the window end itself.
running as (
    select
        stay_id,
        feature,
        at_time,
        is_window_end,
        sum(delta) over (
            partition by stay_id, feature
            order by at_time, is_window_end
            rows between unbounded preceding and current row
        ) as expected_count
    from timeline
),

expected as (
    select stay_id, feature, at_time as event_timestamp, expected_count
    from running
    where is_window_end = 1
),

model_counts as (
    {%- for feature in features %}
    select stay_id, event_timestamp, '{{ feature }}' as feature, {{ feature }}_count as model_count
    from {{ ref('windows_24h') }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
)

select
    coalesce(e.stay_id, m.stay_id) as stay_id,
    coalesce(e.event_timestamp, m.event_timestamp) as event_timestamp,
    coalesce(e.feature, m.feature) as feature,
    e.expected_count,
    m.model_count
from expected as e
full outer join model_counts as m
    on m.stay_id = e.stay_id
    and m.event_timestamp = e.event_timestamp
    and m.feature = e.feature
where e.expected_count is null
    or m.model_count is null
    or e.expected_count <> m.model_count
