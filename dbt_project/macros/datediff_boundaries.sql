{#- dbt.datediff on Spark, counting the boundaries crossed as DuckDB's date_diff and BigQuery's
    DATETIME_DIFF do (10:59 to 11:01 is 1 hour; mimic-code's SQL relies on it), where dbt-spark counts
    whole elapsed units. Sub-day parts truncate both ends first, as dbt-databricks does; days compare
    dates. Found before dbt-spark's own through the dispatch search order in dbt_project.yml. -#}
{% macro spark__datediff(first_date, second_date, datepart) -%}
  {%- if datepart in ('hour', 'minute', 'second') -%}
timestampdiff({{ datepart }}, {{ dbt.date_trunc(datepart, first_date) }}, {{ dbt.date_trunc(datepart, second_date) }})
  {%- elif datepart == 'day' -%}
datediff(to_date({{ second_date }}), to_date({{ first_date }}))
  {%- else -%}
    {{ exceptions.raise_compiler_error("datediff by " ~ datepart ~ " is not defined for Spark in this project") }}
  {%- endif -%}
{%- endmacro %}
