{#- When a row existed in the record: its storetime when present, else its charttime, and never before
    its charttime (a storetime before the charttime is a recording error, not an earlier result). -#}
{% macro available_at(charttime, storetime) -%}
case when {{ storetime }} > {{ charttime }} then {{ storetime }} else {{ charttime }} end
{%- endmacro %}
