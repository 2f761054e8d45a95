{#- One row per variant of each declared experiment, with its share of the traffic (the weights
    declared in experiments.yml, normalised to sum to 1): what the sample-ratio check expects. -#}
-- depends_on: {{ ref('dim_experiments') }}
{%- set experiments = declared_experiments() -%}
{%- if experiments | length == 0 %}
select
    cast(null as {{ sql_type('varchar') }}) as experiment_variant_key,
    cast(null as {{ sql_type('varchar') }}) as experiment_id,
    cast(null as {{ sql_type('varchar') }}) as variant,
    cast(null as boolean) as is_control,
    cast(null as {{ sql_type('double precision') }}) as traffic_share
where 1 = 0
{%- endif %}
{%- for e in experiments %}
{%- set total = e.variants.values() | sum %}
{%- set outer = loop %}
{%- for name, weight in e.variants.items() %}
select
    {{ experiment_literal(e.experiment_id ~ '|' ~ name, 'varchar') }} as experiment_variant_key,
    {{ experiment_literal(e.experiment_id, 'varchar') }} as experiment_id,
    {{ experiment_literal(name, 'varchar') }} as variant,
    {{ 'true' if name == e.control_variant else 'false' }} as is_control,
    {{ experiment_literal(weight / total, 'double precision') }} as traffic_share
{{ "union all" if not (loop.last and outer.last) }}
{%- endfor %}
{%- endfor %}
