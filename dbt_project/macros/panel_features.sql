{#-
  The feature names of the lab and vital panel, in column order (labs, then vitals, each by name), read
  from the panel_features seed at run time. A model that calls it must declare the dependency with
  `-- depends_on: {{ ref('panel_features') }}`, as dbt cannot see a ref made only at run time.
-#}
{% macro panel_feature_names() %}
  {%- if not execute %}{{ return([]) }}{% endif -%}
  {%- set rows = run_query("select feature from " ~ ref('panel_features') ~ " order by kind, feature") -%}
  {{ return(rows.columns[0].values() | list) }}
{% endmacro %}
