{#- Rows that a quality gate holds back (expectations/, table quality.quarantined_rows).

    The gate never deletes a raw row: it records the row's key. Staging models leave out keys
    that are held, and see when a key was released (the row was fixed and passed again), so an
    incremental model can pick the row up then. Before the gate has ever run there is no table,
    and nothing is held.

    `rows_not_held` selects the rows of `relation` that are not held, keyed by `key_column` in the
    quarantine of `source_table` (e.g. 'raw_events.events'), with `_released_at` set on rows that
    were held and have been released. -#}
{% macro rows_not_held(relation, key_column, source_table) -%}
    select source_rows.*, quarantine.released_at as _released_at
    from {{ relation }} as source_rows
    left join ({{ quarantine_state(source_table) }}) as quarantine
        on quarantine.row_key = source_rows.{{ key_column }}
    where coalesce(quarantine.is_held, 0) = 0
{%- endmacro %}

{#- (row_key, is_held, released_at) per key quarantined for one raw table. -#}
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
