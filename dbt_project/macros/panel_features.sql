{#-
  The feature names of the lab and vital panel, in column order (labs, then vitals, each by name), read
  from the panel_features seed at run time. A model that calls it must declare the dependency with
  `-- depends_on: {{ ref('panel_features') }}`, as dbt cannot see a ref made only at run time.
-#}
{% macro panel_feature_names() %}
  {%- if not execute %}{{ return([]) }}{% endif -%}
  {%- if load_relation(ref('panel_features')) is none -%}
    {#- Nothing built yet (dbt compile or docs generate on an empty warehouse): the features of windows_24h's
        schema file, generated from the same seed (scripts/generate_windows_schema.py, kept current by
        tests/test_windows.py), in the same order. -#}
    {%- set names = [] -%}
    {%- for column in graph.nodes['model.sepsis_fusion.windows_24h'].columns if column.endswith('_count') -%}
      {%- do names.append(column[:-6]) -%}
    {%- endfor -%}
    {{ return(names) }}
  {%- endif -%}
  {%- set rows = run_query("select feature from " ~ ref('panel_features') ~ " order by kind, feature") -%}
  {{ return(rows.columns[0].values() | list) }}
{% endmacro %}
