{#- Whether `value` lies in the valid range of its panel feature; `f` is the alias of a joined
    panel_features row (seeds/panel_features.csv: valid_low, low_inclusive, valid_high, high_inclusive). -#}
{% macro panel_value_is_valid(value, f) -%}
(({{ value }} > {{ f }}.valid_low or ({{ f }}.low_inclusive and {{ value }} = {{ f }}.valid_low))
     and ({{ value }} < {{ f }}.valid_high or ({{ f }}.high_inclusive and {{ value }} = {{ f }}.valid_high)))
{%- endmacro %}
