{#- The first whole hour at or after a timestamp: 10:00 stays 10:00, 10:01 becomes 11:00. -#}
{% macro ceil_to_hour(ts) -%}
case when {{ dbt.date_trunc('hour', ts) }} = {{ ts }} then {{ ts }} else {{ dbt.dateadd('hour', 1, dbt.date_trunc('hour', ts)) }} end
{%- endmacro %}
