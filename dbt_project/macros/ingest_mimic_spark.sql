{#-
  ingest_mimic on Spark: the same sources, files and checks as on DuckDB (macros/ingest_mimic.sql), read
  by Spark's CSV (gzip inferred from the name) or Parquet source into Parquet tables in schema `raw`.
  Spark SQL cannot list a folder, so one binaryFile scan of the MIMIC-IV folder (names, sizes and times
  only; the content column is never read) finds every file. dbt-spark turns ANSI mode off, so a cast that
  fails gives NULL instead of an error: each typed column is checked for values that were present but did
  not cast, and the first one is named.
-#}
{% macro spark__ingest_mimic() %}
  {%- if not execute %}{{ return('') }}{% endif -%}
  {%- do _spark_check_session() -%}
  {%- set mimic_dir = var('mimic_dir') -%}
  {%- do run_query("create schema if not exists raw") -%}
  {%- do run_query("create or replace temporary view _mimic_files using binaryFile options (path '"
                   ~ mimic_dir ~ "', recursiveFileLookup 'true')") -%}
  {%- for node in graph.sources.values() if node.source_name == 'mimic' -%}
    {%- do _spark_ingest_one(node, mimic_dir) -%}
  {%- endfor -%}
{% endmacro %}

{#- The session settings the models' results depend on, checked before anything is built: a cluster's own
    defaults can differ from the shipped profile's, and each of these builds wrong tables without an error. -#}
{% macro _spark_check_session() %}
  {%- set needed = [
      ('spark.sql.session.timeZone', ['UTC', 'Etc/UTC', 'Z', '+00:00'],
       "MIMIC-IV's times are UTC wall-clock times; another zone shifts every timestamp written to Parquet"),
      ('spark.sql.timestampType', ['TIMESTAMP_LTZ'],
       "with TIMESTAMP_NTZ, dbt-spark's date arithmetic gives NULLs and the marts come out empty"),
      ('spark.sql.parquet.outputTimestampType', ['TIMESTAMP_MICROS'],
       "Feast, pandas and DuckDB read the marts' timestamps as microseconds"),
  ] -%}
  {%- for key, allowed, why in needed -%}
    {%- set value = run_query("set " ~ key).rows[0][1] -%}
    {%- if value not in allowed -%}
      {{ exceptions.raise_compiler_error("Spark setting " ~ key ~ " is " ~ value ~ "; this project needs "
          ~ allowed[0] ~ " (" ~ why ~ "). Set it in the spark target of profiles.yml (docs/SPARK.md).") }}
    {%- endif -%}
  {%- endfor -%}
{% endmacro %}

{% macro _spark_type(data_type) %}
  {{ return({'varchar': 'string', 'integer': 'int'}.get(data_type, data_type)) }}
{% endmacro %}

{% macro _spark_ingest_one(node, mimic_dir) %}
  {%- set relation = 'raw.' ~ node.name -%}
  {%- set file = node.meta.file -%}
  {%- set cols = node.columns.values() | list -%}
  {%- set found = namespace(path=none) -%}
  {%- for ext in ['.csv.gz', '.parquet', '.csv'] if found.path is none -%}
    {%- set rows = run_query("select path from _mimic_files where path like '%/" ~ file ~ ext ~ "' order by path limit 1").rows -%}
    {%- if rows | length > 0 %}{% set found.path = rows[0][0] %}{% endif -%}
  {%- endfor -%}
  {%- set path = found.path -%}
  {%- if path is none -%}
    {%- if node.meta.get('optional') -%}
      {{ log("WARNING: " ~ mimic_dir ~ "/" ~ file ~ ".csv.gz not found: " ~ node.meta.get('turns_off', 'this part') ~ " is turned off", info=true) }}
      {%- do run_query("drop table if exists " ~ relation) -%}
      {%- set empty -%}select {% for c in cols %}cast(null as {{ _spark_type(c.data_type) }}) as {{ c.name }}{{ ", " if not loop.last }}{% endfor %} limit 0{%- endset -%}
      {%- do run_query("create table " ~ relation ~ " using parquet as " ~ empty) -%}
      {{ return('') }}
    {%- endif -%}
    {{ exceptions.raise_compiler_error("MIMIC-IV table " ~ file ~ " not found: expected " ~ mimic_dir ~ "/" ~ file
        ~ ".csv.gz (or .csv, .parquet). Set the MIMIC-IV folder with the dbt var mimic_dir or $SEPSIS_FUSION_MIMIC_DIR.") }}
  {%- endif -%}
  {%- set source = "_raw_" ~ node.name -%}
  {%- if path.endswith('.parquet') -%}
    {%- do run_query("create or replace temporary view " ~ source ~ " using parquet options (path '" ~ path ~ "')") -%}
  {%- else -%}
    {%- do run_query("create or replace temporary view " ~ source ~ " using csv options (path '" ~ path
          ~ "', header 'true', quote '\"', escape '\"', multiLine 'true', mode 'FAILFAST')") -%}
  {%- endif -%}
  {%- set header = run_query("select * from " ~ source ~ " limit 0").column_names | list -%}
  {%- set missing = [] -%}
  {%- for c in cols if c.name not in header %}{% do missing.append(c.name) %}{% endfor -%}
  {%- if missing | length > 0 -%}
    {{ exceptions.raise_compiler_error(path ~ " lacks column(s) " ~ (missing | join(', ')) ~ " that the project reads") }}
  {%- endif -%}
  {%- set where = "where cast(itemid as int) in (" ~ (node.meta.itemids | join(', ')) ~ ")" if node.meta.get('itemids') else "" -%}
  {%- set checked = [] -%}
  {%- for c in cols if c.data_type != 'varchar' %}{% do checked.append(c) %}{% endfor -%}
  {%- if checked | length > 0 -%}
    {%- set probe -%}
      select {% for c in checked %}min(case when `{{ c.name }}` is not null and trim(`{{ c.name }}`) <> ''
        and try_cast(`{{ c.name }}` as {{ _spark_type(c.data_type) }}) is null then `{{ c.name }}` end){{ ", " if not loop.last }}{% endfor %}
      from {{ source }} {{ where | replace('cast(', 'try_cast(') }}
    {%- endset -%}
    {%- set bad = run_query(probe).rows[0] -%}
    {%- for c in checked -%}
      {%- if bad[loop.index0] is not none -%}
        {{ exceptions.raise_compiler_error(path ~ ": column " ~ c.name ~ " has the value '" ~ bad[loop.index0]
            ~ "', which is not a " ~ c.data_type) }}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ log("raw: loading " ~ path, info=true) }}
  {%- do run_query("drop table if exists " ~ relation) -%}
  {%- set typed -%}
    {%- for c in cols %}cast(`{{ c.name }}` as {{ _spark_type(c.data_type) }}) as {{ c.name }}{{ ", " if not loop.last }}{% endfor -%}
  {%- endset -%}
  {%- do run_query("create table " ~ relation ~ " using parquet as select " ~ typed ~ " from " ~ source ~ " " ~ where) -%}
{% endmacro %}
