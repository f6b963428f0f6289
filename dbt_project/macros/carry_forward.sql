{#- The last non-NULL value of `expr` in a window frame (forward fill): DuckDB's and Spark's
    last_value ... ignore nulls, spelled as each parses it. Use with `over <window>`. -#}
{% macro carry_forward(expr) -%}
  {{ return(adapter.dispatch('carry_forward')(expr)) }}
{%- endmacro %}

{% macro default__carry_forward(expr) -%}
last_value({{ expr }} ignore nulls)
{%- endmacro %}

{% macro spark__carry_forward(expr) -%}
last_value({{ expr }}, true)
{%- endmacro %}
