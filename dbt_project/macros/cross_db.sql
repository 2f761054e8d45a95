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

{% macro spark__json_text(column, key) -%}
    get_json_object({{ column }}, '$.{{ key }}')
{%- endmacro %}

{#- A UTC wall-clock timestamp (no zone) from a zoned one: dates then never depend on the session zone. -#}
{% macro to_utc(column) -%}
    {{ return(adapter.dispatch('to_utc')(column)) }}
{%- endmacro %}

{% macro default__to_utc(column) -%}
    cast(({{ column }}) at time zone 'UTC' as timestamp)
{%- endmacro %}

{#- Spark's timestamps are instants shown in the session's zone, which profiles.yml sets to UTC. -#}
{% macro spark__to_utc(column) -%}
    cast({{ column }} as timestamp)
{%- endmacro %}

{#- One row per day from start to end inclusive, as column `date_day`. -#}
{% macro days_between(start_date, end_date) -%}
    {{ return(adapter.dispatch('days_between')(start_date, end_date)) }}
{%- endmacro %}

{% macro default__days_between(start_date, end_date) -%}
    select cast(d as date) as date_day
    from generate_series(cast({{ start_date }} as timestamp), cast({{ end_date }} as timestamp), interval '1 day') as spine(d)
{%- endmacro %}

{% macro spark__days_between(start_date, end_date) -%}
    select explode(sequence(cast({{ start_date }} as date), cast({{ end_date }} as date), interval 1 day)) as date_day
{%- endmacro %}

{#- A column type as the contracts name it (varchar, double precision, numeric(18,2)) in the engine's
    own words: Spark has no bare varchar (a length is required) and no `double precision`. -#}
{% macro sql_type(name) -%}
    {{ return(adapter.dispatch('sql_type')(name)) }}
{%- endmacro %}

{% macro default__sql_type(name) -%}
    {{ return(name) }}
{%- endmacro %}

{% macro spark__sql_type(name) -%}
    {{ return({'varchar': 'string', 'text': 'string', 'double precision': 'double'}.get(name | lower, name)) }}
{%- endmacro %}

{#- dbt's own cast on Spark, with the contracts' type names translated: dbt checks an enforced contract
    by casting null to each declared type (get_empty_schema_sql), so one set of contracts holds on
    every engine (dispatched first to this project: dbt_project.yml `dispatch`). -#}
{% macro spark__cast(field, type) -%}
    cast({{ field }} as {{ spark__sql_type(type) }})
{%- endmacro %}

{#- Whether a text value is written as a date, YYYY-MM-DD (the whole value). -#}
{% macro looks_like_iso_date(column) -%}
    {{ return(adapter.dispatch('looks_like_iso_date')(column)) }}
{%- endmacro %}

{% macro default__looks_like_iso_date(column) -%}
    ({{ column }} similar to '[0-9]{4}-[0-9]{2}-[0-9]{2}')
{%- endmacro %}

{% macro spark__looks_like_iso_date(column) -%}
    ({{ column }} rlike '^[0-9]{4}-[0-9]{2}-[0-9]{2}$')
{%- endmacro %}
