{#- Dialect differences the project needs beyond dbt's own cross-database macros. -#}

{#- The text value of a top-level key of a JSON document stored as text. -#}
{% macro json_text(column, key) -%}
    {{ return(adapter.dispatch('json_text')(column, key)) }}
{%- endmacro %}

{% macro default__json_text(column, key) -%}
    (cast({{ column }} as json) ->> '{{ key }}')
{%- endmacro %}

{% macro duckdb__json_text(column, key) -%}
    json_extract_string({{ column }}, '$.{{ key }}')
{%- endmacro %}

{#- A UTC wall-clock timestamp (no zone) from a zoned one: dates then never depend on the session zone. -#}
{% macro to_utc(column) -%}
    cast(({{ column }}) at time zone 'UTC' as timestamp)
{%- endmacro %}

{#- One row per day from start to end inclusive, as column `date_day`. -#}
{% macro days_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('days_between')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__days_between(start_date, end_date) -%}
    select cast(d as date) as date_day
    from generate_series(cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval '1 day') as spine(d)
{%- endmacro %}
