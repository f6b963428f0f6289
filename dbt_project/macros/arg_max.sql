{#- The value of `arg` on the row with the largest `key` (an aggregate). Cross-database: DuckDB's
    arg_max, Spark's max_by, BigQuery's array_agg; `key` should be unique within a group so that the
    answer does not depend on row order. -#}
{% macro arg_max(arg, key) -%}
  {{ return(adapter.dispatch('arg_max')(arg, key)) }}
{%- endmacro %}

{% macro default__arg_max(arg, key) -%}
arg_max({{ arg }}, {{ key }})
{%- endmacro %}

{% macro spark__arg_max(arg, key) -%}
max_by({{ arg }}, {{ key }})
{%- endmacro %}

{% macro bigquery__arg_max(arg, key) -%}
array_agg({{ arg }} order by {{ key }} desc limit 1)[offset(0)]
{%- endmacro %}
