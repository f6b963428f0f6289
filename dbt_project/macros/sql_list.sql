{#- ('a', 'b', ...) from a Jinja list of strings, for `x in (...)`. -#}
{% macro sql_list(values) -%}
({% for v in values %}'{{ v | replace("'", "''") }}'{{ ", " if not loop.last }}{% endfor %})
{%- endmacro %}
