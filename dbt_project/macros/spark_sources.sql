{#- The sources as tables of the warehouse. On DuckDB and PostgreSQL dlt loads them as tables: nothing
    to do. On Spark dlt writes Parquet files, one folder per table under PLATFORM_SPARK_DIR/sources
    (orchestration/environment.py), and this registers each of dlt's sources (`loader: dlt`) that a selected model reads as an external
    table over its folder, anew every run (a drop leaves the files; the new table sees new files and
    new columns). Run as the project's on-run-start hook. -#}
{% macro register_parquet_sources() -%}
    {{ return(adapter.dispatch('register_parquet_sources')()) }}
{%- endmacro %}

{% macro default__register_parquet_sources() -%}
{%- endmacro %}

{% macro spark__register_parquet_sources() -%}
    {%- if execute -%}
        {%- set read = [] -%}
        {%- for node in graph.nodes.values() if node.unique_id in selected_resources -%}
            {%- for parent in node.depends_on.nodes if parent.startswith('source.') -%}
                {%- do read.append(parent) -%}
            {%- endfor -%}
        {%- endfor -%}
        {%- set root = env_var('PLATFORM_SPARK_DIR', '../data/spark') ~ '/sources' -%}
        {%- for source in graph.sources.values() if source.loader == 'dlt' and source.unique_id in read -%}
            {%- do run_query('create database if not exists ' ~ source.schema) -%}
            {%- do run_query('drop table if exists ' ~ source.schema ~ '.' ~ source.identifier) -%}
            {%- do run_query('create table ' ~ source.schema ~ '.' ~ source.identifier ~ " using parquet location '"
                             ~ root ~ '/' ~ source.schema ~ '/' ~ source.identifier ~ "'") -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
