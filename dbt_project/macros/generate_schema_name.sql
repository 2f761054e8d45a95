{#- Layer schemas are named as the layer (`staging`, `marts`), not `<target schema>_<layer>`,
    so BI tools and the semantic layer see the same names on every target. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
