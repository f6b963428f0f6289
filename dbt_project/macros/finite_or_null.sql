{#- A number, or null when it is NaN or +/-inf: raw files may hold 'NaN' or 'inf' strings, which cast to
    doubles that compare as larger than every valid range bound (NaN in DuckDB) or pass a "> x" test. -#}
{% macro finite_or_null(value) -%}
  {{ return(adapter.dispatch('finite_or_null')(value)) }}
{%- endmacro %}

{% macro default__finite_or_null(value) -%}
case when isfinite({{ value }}) then {{ value }} end
{%- endmacro %}

{% macro spark__finite_or_null(value) -%}
case when not isnan({{ value }}) and abs({{ value }}) < cast('Infinity' as double) then {{ value }} end
{%- endmacro %}
