{#- A raw MIMIC-IV table as PhysioNet distributes it (gzip CSV). MIMIC-IV quotes with '"', escapes a
    quote by doubling it, and lets free text span lines, so those are set rather than sniffed. -#}
{% macro mimic_csv(table) -%}
read_csv('{{ var("mimic_dir") }}/{{ table }}.csv.gz', header = true, quote = '"', escape = '"')
{%- endmacro %}
