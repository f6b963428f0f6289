{#- dbt's date arithmetic on Spark as DuckDB does it; found before dbt-spark's own through the dispatch
    search order in dbt_project.yml.

    datediff counts the boundaries crossed, as DuckDB's date_diff and BigQuery's DATETIME_DIFF do (10:59
    to 11:01 is 1 hour; mimic-code's SQL relies on it), where dbt-spark counts whole elapsed units.
    Sub-day parts truncate both ends first, as dbt-databricks does; days compare dates.

    dateadd is Spark's timestampadd: exact to the microsecond, and the amount is one expression (dbt-spark
    1.11 multiplies `interval * 3600` without parentheses, so an amount `h - 24` adds h - 86400 seconds,
    and goes through whole Unix seconds). Months and years end on the month's last day when the day does
    not exist (Jan 31 + 1 month is Feb 28 or 29), as in DuckDB. -#}
{% macro spark__datediff(first_date, second_date, datepart) -%}
  {%- if datepart in ('hour', 'minute', 'second') -%}
timestampdiff({{ datepart }}, {{ dbt.date_trunc(datepart, first_date) }}, {{ dbt.date_trunc(datepart, second_date) }})
  {%- elif datepart == 'day' -%}
datediff(to_date({{ second_date }}), to_date({{ first_date }}))
  {%- else -%}
    {{ exceptions.raise_compiler_error("datediff by " ~ datepart ~ " is not defined for Spark in this project") }}
  {%- endif -%}
{%- endmacro %}

{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) -%}
  {%- if datepart in ('year', 'month', 'day', 'hour', 'minute', 'second') -%}
timestampadd({{ datepart }}, {{ interval }}, {{ from_date_or_timestamp }})
  {%- else -%}
    {{ exceptions.raise_compiler_error("dateadd by " ~ datepart ~ " is not defined for Spark in this project") }}
  {%- endif -%}
{%- endmacro %}
