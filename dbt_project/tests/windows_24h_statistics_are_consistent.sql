{#-
  Every window's statistics agree with each other and with the feature's valid range
  (seeds/panel_features.csv): count 0 has no other statistic; otherwise min <= mean <= max, last within
  [min, max], min and max inside the valid range, std present (and >= 0) exactly when count >= 2.
  Returns the offending windows.
-#}
-- depends_on: {{ ref('panel_features') }}, {{ ref('windows_24h') }}
{%- set features = panel_feature_names() %}

with

stats as (
    {%- for feature in features %}
    select
        stay_id,
        event_timestamp,
        '{{ feature }}' as feature,
        {{ feature }}_min as min_value,
        {{ feature }}_max as max_value,
        {{ feature }}_mean as mean_value,
        {{ feature }}_std as std_value,
        {{ feature }}_count as n_values,
        {{ feature }}_last as last_value
    from {{ ref('windows_24h') }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

checked as (
    select
        s.*,
        -- rounding slack for the mean
        1e-9 * (abs(s.min_value) + abs(s.max_value) + 1) as slack,
        f.valid_low,
        f.valid_high,
        {{ panel_value_is_valid('s.min_value', 'f') }} as min_is_valid,
        {{ panel_value_is_valid('s.max_value', 'f') }} as max_is_valid
    from stats as s
    inner join {{ ref('panel_features') }} as f on f.feature = s.feature
)

select *
from checked
where n_values is null
    or n_values < 0
    or (n_values = 0 and (min_value is not null or max_value is not null or mean_value is not null
                          or std_value is not null or last_value is not null))
    or (n_values > 0 and (min_value is null or max_value is null or mean_value is null or last_value is null
                          or not min_is_valid or not max_is_valid
                          or min_value > max_value
                          or mean_value < min_value - slack or mean_value > max_value + slack
                          or last_value < min_value or last_value > max_value))
    or (n_values = 1 and std_value is not null)
    or (n_values >= 2 and (std_value is null or std_value < 0))
