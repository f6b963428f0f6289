{#-
  Whether this dbt command builds relations: `build`, `run` and `seed` (dbt's flags.WHICH). The
  on-run-start hooks (dbt_project.yml) load the raw data and create the feature folder only then: `dbt
  parse`, `dbt compile`, `dbt docs generate`, `dbt test` and `dbt ls` read no MIMIC-IV file and create no
  table or folder, and the first three work without any raw data.
-#}
{% macro builds_relations() %}
  {{ return(flags.WHICH in ['build', 'run', 'seed']) }}
{% endmacro %}
