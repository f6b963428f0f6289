{#-
  dbt-duckdb's `external` materialization on Spark: the model's rows are written as Parquet to its
  `location` (Spark writes a folder of part files there, replacing what was there), and the model's
  relation is a view over that folder, so refs downstream read what was written.

  Timestamps are written as DuckDB writes them, without a time zone (Parquet isAdjustedToUTC = false,
  microseconds): Spark's session time zone is UTC (the spark target), so the cast to timestamp_ntz keeps
  the UTC wall-clock time, and readers (Feast, pandas, DuckDB) get the same types from either engine.
  The view casts them back, so models downstream compute with Spark's usual timestamps. Config
  `options` are DuckDB's COPY options and are not used here.

  An enforced contract is checked as dbt-duckdb's external materialization checks it (through its
  create_table_as): dbt's assertion compares the SQL's column names and types with the schema file's
  before anything is written, and the rows are then written in the schema file's column order.
-#}
{% materialization external, adapter='spark' %}
  {%- set location = config.require('location') -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing = load_cached_relation(this) -%}
  {%- set staged = this.identifier ~ '__external_rows' -%}

  {{ run_hooks(pre_hooks) }}

  {%- set sql = compiled_code -%}
  {%- if config.get('contract').enforced -%}
    {{ get_assert_columns_equivalent(compiled_code) }}
    {%- set sql = get_select_subquery(compiled_code) -%}
  {%- endif %}

  {% call statement('stage_rows') -%}
    create or replace temporary view {{ staged }} as
    {{ sql }}
  {%- endcall %}
  {%- set columns = run_query('describe ' ~ staged) -%}
  {%- set written = [] -%}
  {%- set read_back = [] -%}
  {%- for row in columns.rows if row[0] and not row[0].startswith('#') -%}
    {%- set name = adapter.quote(row[0]) -%}
    {%- if row[1] == 'timestamp' -%}
      {%- do written.append('cast(' ~ name ~ ' as timestamp_ntz) as ' ~ name) -%}
      {%- do read_back.append('cast(' ~ name ~ ' as timestamp) as ' ~ name) -%}
    {%- else -%}
      {%- do written.append(name) -%}
      {%- do read_back.append(name) -%}
    {%- endif -%}
  {%- endfor %}

  {% call statement('write_parquet') -%}
    insert overwrite directory '{{ location }}' using parquet
    select {{ written | join(', ') }} from {{ staged }}
  {%- endcall %}

  {% if existing is not none and existing.type != 'view' %}
    {{ adapter.drop_relation(existing) }}
  {% endif %}

  {% call statement('main') -%}
    create or replace view {{ target_relation }} as
    select {{ read_back | join(', ') }} from parquet.`{{ location }}`
  {%- endcall %}

  {{ run_hooks(post_hooks) }}
  {% do persist_docs(target_relation, model) %}
  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#- dbt's contract check casts NULL to each declared type; Spark takes the project's types (varchar, integer)
    under its own names (string, int), as the raw ingest does (macros/ingest_mimic_spark.sql). -#}
{% macro spark__get_empty_schema_sql(columns) %}
  {%- set spark_columns = {} -%}
  {%- for name, column in columns.items() -%}
    {%- do spark_columns.update({name: dict(column, data_type=_spark_type(column['data_type']))}) -%}
  {%- endfor -%}
  {{ return(default__get_empty_schema_sql(spark_columns)) }}
{% endmacro %}
