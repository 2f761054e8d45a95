{#- Rows that a quality gate holds back (expectations/, table quality.quarantined_rows).

    The gate never deletes a raw row: it records the row's key. Staging models leave out keys
    that are held, and see when a key was released (the row was fixed and passed again), so an
    incremental model can pick the row up then. Before the gate has ever run there is no table,
    and nothing is held.

    Returns a query of (row_key, is_held, released_at) for one raw table, e.g. 'raw_events.events'. -#}
{% macro quarantine_state(source_table) -%}
    {%- set relation = adapter.get_relation(database=target.database, schema='quality',
                                            identifier='quarantined_rows') if execute else none -%}
    {%- if relation is not none -%}
    select
        row_key,
        max(case when released_at is null then 1 else 0 end) as is_held,
        max(released_at) as released_at
    from {{ relation }}
    where source_table = '{{ source_table }}'
    group by row_key
    {%- else -%}
    select
        cast(null as {{ dbt.type_string() }}) as row_key,
        0 as is_held,
        cast(null as {{ dbt.type_timestamp() }}) as released_at
    where 1 = 0
    {%- endif -%}
{%- endmacro %}
