{#-
  Creates a folder (and its missing parents) from SQL, for dbt-duckdb's external materializations, which
  write into a folder but do not create it. Runs as an on-run-start hook: `{{ ensure_directory(path) }}`.

  DuckDB has no mkdir; a partitioned COPY of zero rows creates its target folder and writes nothing,
  and OVERWRITE_OR_IGNORE leaves a folder that is already there (and its files) alone. DuckDB creates one
  level at a time, so each missing parent is made in turn.
-#}
{% macro ensure_directory(path) %}
  {{ return(adapter.dispatch('ensure_directory')(path)) }}
{% endmacro %}

{#- Spark creates the folders it writes into. -#}
{% macro spark__ensure_directory(path) %}
  {{ return('') }}
{% endmacro %}

{% macro default__ensure_directory(path) %}
  {%- if not execute %}{{ return('') }}{% endif -%}
  {%- set parts = path.rstrip('/').split('/') -%}
  {%- for i in range(1, parts | length + 1) -%}
    {%- set prefix = parts[:i] | join('/') -%}
    {%- if parts[i - 1] not in ('', '.', '..') -%}
      {%- do run_query("copy (select 1 as part, 1 as nothing where false) to '" ~ prefix
            ~ "' (format csv, partition_by (part), overwrite_or_ignore true)") -%}
    {%- endif -%}
  {%- endfor -%}
{% endmacro %}
