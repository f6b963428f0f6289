{#-
  dbt-duckdb's `external` materialization, built a group of stays at a time: for marts too large to build
  in one query within DuckDB's memory_limit (windows_24h and sequence_steps at full MIMIC-IV scale, where
  one query spilled more than 40 GB and filled the disk). The model's rows are computed for one bucket of
  stays after another (stay_id modulo the bucket count; the model filters its inputs with
  `in_stay_bucket`), appended to one table, then written to `location` as dbt-duckdb writes it (its
  `options`, one all-NULL row when empty) with a view over the file. Every row depends on one stay only,
  so the rows are those of one query. DuckDB frees each bucket's hash tables before the next (a UNION ALL
  of the buckets does not: measured, memory grows with each branch).

  Config `stay_buckets`: {'stays_of': a model the model refs, 'stays_per_bucket': N}: the bucket count is
  ceil(distinct stay_id of that model / N), one bucket (a single query) for small data. An enforced contract is checked as
  dbt-duckdb checks it, before the first bucket runs.
-#}
{% materialization external_in_stay_buckets, adapter='duckdb' %}
  {%- set location = render(config.require('location')) -%}
  {%- set rendered_options = render_write_options(config) -%}
  {%- set write_options = adapter.external_write_options(location, rendered_options) -%}
  {%- set read_location = adapter.external_read_location(location, rendered_options) -%}
  {%- set target_relation = this.incorporate(type='view') -%}
  {%- set existing_relation = load_cached_relation(this) -%}
  {%- set rows_relation = make_intermediate_relation(this.incorporate(type='table'), suffix='__dbt_tmp') -%}
  {{ drop_relation_if_exists(load_cached_relation(rows_relation)) }}

  {{ run_hooks(pre_hooks, inside_transaction=False) }}
  {{ run_hooks(pre_hooks, inside_transaction=True) }}

  {%- set buckets = stay_bucket_count(config.require('stay_buckets')) -%}
  {%- if buckets > 1 %}{{ log(this.identifier ~ ': building ' ~ buckets ~ ' buckets of stays', info=True) }}{% endif -%}
  {%- for bucket in range(buckets) %}
    {% call statement('bucket_' ~ bucket) -%}
      set variable stay_buckets = {{ buckets }};
      set variable stay_bucket = {{ bucket }};
      {% if bucket == 0 -%}
        {{ create_table_as(False, rows_relation, compiled_code) }}
      {%- elif config.get('contract').enforced -%}
        insert into {{ rows_relation }} {{ get_column_names() }} ({{ get_select_subquery(compiled_code) }});
      {%- else -%}
        insert into {{ rows_relation }} select * from ({{ compiled_code }}) as model_subq;
      {%- endif %}
      reset variable stay_buckets;
      reset variable stay_bucket;
    {%- endcall %}
  {%- endfor %}

  {%- set columns = get_columns_in_relation(rows_relation) -%}
  {%- set empty = run_query('select count(*) = 0 from ' ~ rows_relation).columns[0].values()[0] -%}
  {% if empty %}
    {% call statement('keep_schema') -%}
      insert into {{ rows_relation }} values ({% for col in columns %}NULL{{ ', ' if not loop.last }}{% endfor %})
    {%- endcall %}
  {% endif %}
  {{ write_to_file(rows_relation, location, write_options) }}

  {% if existing_relation is not none and existing_relation.type != 'view' %}
    {{ adapter.drop_relation(existing_relation) }}
  {% endif %}
  {% call statement('main') -%}
    create or replace view {{ target_relation }} as (
      select * from read_parquet('{{ read_location }}')
      {% if empty %}
        where 1 {% for col in columns %} and "{{ col.column }}" is not null{% endfor %}
      {% endif %}
    )
  {%- endcall %}

  {{ run_hooks(post_hooks, inside_transaction=True) }}
  {% do persist_docs(target_relation, model) %}
  {{ adapter.commit() }}
  {{ drop_relation_if_exists(rows_relation) }}
  {{ run_hooks(post_hooks, inside_transaction=False) }}
  {{ return({'relations': [target_relation]}) }}
{% endmaterialization %}

{#- How many buckets of stays: ceil(the stays of spec.stays_of / spec.stays_per_bucket), at least 1. -#}
{% macro stay_bucket_count(spec) %}
  {%- set counted = adapter.get_relation(database=this.database, schema=this.schema, identifier=spec['stays_of']) -%}
  {%- if counted is none -%}
    {{ exceptions.raise_compiler_error("stay_buckets: stays_of " ~ spec['stays_of'] ~ " is not built") }}
  {%- endif -%}
  {%- set stays = run_query('select count(distinct stay_id) from ' ~ counted).columns[0].values()[0] -%}
  {%- set per_bucket = spec['stays_per_bucket'] | int -%}
  {{ return([1, ((stays + per_bucket - 1) // per_bucket) | int] | max) }}
{% endmacro %}

{#- The rows of the stay bucket being built (external_in_stay_buckets); every row outside that
    materialization (the variables unset: one bucket, all stays) and on other engines. -#}
{% macro in_stay_bucket(column) -%}
  {{ return(adapter.dispatch('in_stay_bucket', 'sepsis_fusion')(column)) }}
{%- endmacro %}

{% macro default__in_stay_bucket(column) -%}
  true
{%- endmacro %}

{% macro duckdb__in_stay_bucket(column) -%}
  ({{ column }} % coalesce(getvariable('stay_buckets'), 1)) = coalesce(getvariable('stay_bucket'), 0)
{%- endmacro %}
