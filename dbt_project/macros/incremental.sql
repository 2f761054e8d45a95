{#- `newer_than('loaded_at', 'last_loaded_at')`: the rows of an incremental model's input past the
    newest `cursor` value the model already holds (`column` of the input, `cursor` of {{ this }}).

    The newest value is read before the model's query runs and written into it as a literal: with
    a subquery there, the warehouse must compute every input row before comparing, while a
    literal is pushed down to the scan, so a micro-batch reads only the new rows of a view in
    full. -#}
{% macro newer_than(column, cursor=none) -%}
    {%- set cursor = cursor or column -%}
    {%- set newest = none -%}
    {%- if execute -%}
        {%- set newest = run_query("select max(" ~ cursor ~ ") from " ~ this).columns[0].values()[0] -%}
    {%- endif -%}
    {{ column }} > cast('{{ newest if newest is not none else "1900-01-01" }}' as {{ dbt.type_timestamp() }})
{%- endmacro %}
