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

{#- How the incremental models write on each engine. DuckDB and PostgreSQL MERGE on the unique key.
    Spark has MERGE only on Delta Lake, Iceberg or Hudi tables, whose jars come from Maven, which this
    project does not fetch: its tables are plain Parquet, which dbt-spark appends to or overwrites.

    `insert_only_strategy()`: for facts that never change once written (fct_events): a MERGE, or on
    Spark an append of the rows whose key the table does not hold yet (`and {{ key_is_new(key) }}`
    in the incremental filter), which is the same for rows that only ever arrive.
    `recompute_strategy()`: for aggregates whose incremental run recomputes what new rows touched
    (metrics_per_minute): a MERGE, or on Spark an overwrite of the whole table, recomputed whole
    (`is_incremental_merge()` is false there, so the model's incremental filter is left out). -#}
{% macro insert_only_strategy() -%}
    {{ return(adapter.dispatch('insert_only_strategy')()) }}
{%- endmacro %}

{% macro default__insert_only_strategy() -%}
    {{ return('merge') }}
{%- endmacro %}

{% macro spark__insert_only_strategy() -%}
    {{ return('append') }}
{%- endmacro %}

{% macro key_is_new(key) -%}
    {{ return(adapter.dispatch('key_is_new')(key)) }}
{%- endmacro %}

{% macro default__key_is_new(key) -%}
    true
{%- endmacro %}

{% macro spark__key_is_new(key) -%}
    {{ key }} not in (select {{ key }} from {{ this }})
{%- endmacro %}

{% macro recompute_strategy() -%}
    {{ return(adapter.dispatch('recompute_strategy')()) }}
{%- endmacro %}

{% macro default__recompute_strategy() -%}
    {{ return('merge') }}
{%- endmacro %}

{% macro spark__recompute_strategy() -%}
    {{ return('insert_overwrite') }}
{%- endmacro %}

{% macro is_incremental_merge() -%}
    {{ return(is_incremental() and recompute_strategy() == 'merge') }}
{%- endmacro %}
