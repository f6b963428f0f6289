{#-
  Loads the raw MIMIC-IV files once into typed tables in schema `raw`, and again only when a file (size,
  modification time) or its load query changes: re-runs over tens of GB of gzip CSV are then cheap.
  Runs as dbt's on-run-start hook, before any model.

  Each `mimic` source in models/staging/_sources.yml names its file (meta.file, without extension), the
  columns the project reads with their types, optionally meta.itemids (only rows of those items are
  kept) and meta.optional (a missing optional file turns that part off with a warning). A file may be
  gzip CSV as PhysioNet distributes it, plain CSV, or Parquet.
-#}
{% macro ingest_mimic() %}
  {{ return(adapter.dispatch('ingest_mimic')()) }}
{% endmacro %}

{% macro default__ingest_mimic() %}
  {%- if not execute %}{{ return('') }}{% endif -%}
  {%- set mimic_dir = var('mimic_dir') -%}
  {%- do run_query("create schema if not exists raw") -%}
  {%- do run_query("create table if not exists raw._ingest_log (relation varchar primary key, path varchar,"
                   ~ " size bigint, modified timestamptz, query_hash varchar, rows bigint, loaded_at timestamptz)") -%}
  {%- for node in graph.sources.values() if node.source_name == 'mimic' -%}
    {%- do _ingest_one(node, mimic_dir) -%}
  {%- endfor -%}
{% endmacro %}

{% macro _find_file(mimic_dir, file) %}
  {%- for ext in ['.csv.gz', '.parquet', '.csv'] -%}
    {%- set found = run_query("select file from glob('" ~ mimic_dir ~ "/" ~ file ~ ext ~ "')") -%}
    {%- if found.rows | length > 0 -%}{{ return(found.rows[0][0]) }}{%- endif -%}
  {%- endfor -%}
  {{ return(none) }}
{% endmacro %}

{% macro _reader(path, columns) %}
  {%- if path.endswith('.parquet') -%}
    {{ return("read_parquet('" ~ path ~ "')") }}
  {%- endif -%}
  {#- By name, every column as text; the select below casts, so a bad value names its column. MIMIC-IV
      quotes with '"', escapes by doubling, and lets free text span lines. -#}
  {{ return("read_csv('" ~ path ~ "', header = true, quote = '\"', escape = '\"', all_varchar = true)") }}
{% endmacro %}

{% macro _ingest_one(node, mimic_dir) %}
  {%- set relation = 'raw.' ~ node.name -%}
  {%- set file = node.meta.file -%}
  {%- set path = _find_file(mimic_dir, file) -%}
  {%- set cols = node.columns.values() | list -%}
  {%- set typed -%}
    {%- for c in cols %}cast({{ adapter.quote(c.name) }} as {{ c.data_type }}) as {{ c.name }}{{ ", " if not loop.last }}{% endfor -%}
  {%- endset -%}
  {%- if path is none -%}
    {%- if node.meta.get('optional') -%}
      {{ log("WARNING: " ~ mimic_dir ~ "/" ~ file ~ ".csv.gz not found: " ~ node.meta.get('turns_off', 'this part') ~ " is turned off", info=true) }}
      {%- set empty -%}select {% for c in cols %}null::{{ c.data_type }} as {{ c.name }}{{ ", " if not loop.last }}{% endfor %} limit 0{%- endset -%}
      {%- do run_query("create or replace table " ~ relation ~ " as " ~ empty) -%}
      {%- do run_query("delete from raw._ingest_log where relation = '" ~ relation ~ "'") -%}
      {{ return('') }}
    {%- endif -%}
    {{ exceptions.raise_compiler_error("MIMIC-IV table " ~ file ~ " not found: expected " ~ mimic_dir ~ "/" ~ file
        ~ ".csv.gz (or .csv, .parquet). Set the MIMIC-IV folder with the dbt var mimic_dir or $SEPSIS_FUSION_MIMIC_DIR.") }}
  {%- endif -%}
  {%- set reader = _reader(path, cols) -%}
  {%- set where = "where cast(itemid as integer) in (" ~ (node.meta.itemids | join(', ')) ~ ")" if node.meta.get('itemids') else "" -%}
  {%- set query = "select " ~ typed ~ " from " ~ reader ~ " " ~ where -%}
  {%- set stat = run_query("select size, last_modified, md5('" ~ (query | replace("'", "''")) ~ "') from read_blob('" ~ path ~ "')").rows[0] -%}
  {%- set logged = run_query("select size, modified, query_hash from raw._ingest_log where relation = '" ~ relation ~ "' and path = '" ~ path ~ "'").rows -%}
  {%- if logged | length > 0 and logged[0][0] == stat[0] and logged[0][1] == stat[1] and logged[0][2] == stat[2] -%}
    {{ log("raw: " ~ file ~ " unchanged, kept", info=true) }}
    {{ return('') }}
  {%- endif -%}
  {%- set header = run_query("describe select * from " ~ reader).columns[0].values() | list -%}
  {%- set missing = [] -%}
  {%- for c in cols if c.name not in header %}{% do missing.append(c.name) %}{% endfor -%}
  {%- if missing | length > 0 -%}
    {{ exceptions.raise_compiler_error(path ~ " lacks column(s) " ~ (missing | join(', ')) ~ " that the project reads") }}
  {%- endif -%}
  {{ log("raw: loading " ~ path, info=true) }}
  {%- do run_query("create or replace table " ~ relation ~ " as " ~ query) -%}
  {%- set n = run_query("select count(*) from " ~ relation).rows[0][0] -%}
  {%- do run_query("insert or replace into raw._ingest_log values ('" ~ relation ~ "', '" ~ path ~ "', " ~ stat[0]
        ~ ", '" ~ stat[1] ~ "', '" ~ stat[2] ~ "', " ~ n ~ ", now())") -%}
{% endmacro %}
