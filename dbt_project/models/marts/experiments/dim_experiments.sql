{#- One row per experiment declared in experiments.yml (see macros/experiments.sql), as declared:
    the analysis (ml/experiments) judges whether it can be analysed. -#}
{%- set experiments = declared_experiments() -%}
{%- set columns = [
    ('experiment_id', 'varchar'), ('tenant_id', 'varchar'), ('experiment_name', 'varchar'),
    ('hypothesis', 'varchar'), ('primary_metric', 'varchar'), ('secondary_metrics', 'varchar'),
    ('start_date', 'date'), ('stop_date', 'date'), ('minimum_detectable_effect', 'double precision'),
    ('alpha', 'double precision'), ('power', 'double precision'), ('conversion_window_days', 'integer'),
    ('control_variant', 'varchar'), ('variant_count', 'integer'),
] -%}
{%- if experiments | length == 0 %}
select
    {%- for name, type in columns %}
    cast(null as {{ sql_type(type) }}) as {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
where 1 = 0
{%- endif %}
-- sqlfluff's indentation check misreads a loop over the select list inside a loop over experiments
-- noqa: disable=LT02
{%- for e in experiments %}
{%- set values = {
    'experiment_id': e.experiment_id, 'tenant_id': e.tenant_id, 'experiment_name': e.name,
    'hypothesis': e.hypothesis, 'primary_metric': e.primary_metric,
    'secondary_metrics': e.secondary_metrics | join(','), 'start_date': e.start_date, 'stop_date': e.stop_date,
    'minimum_detectable_effect': e.minimum_detectable_effect, 'alpha': e.alpha, 'power': e.power,
    'conversion_window_days': e.conversion_window_days, 'control_variant': e.control_variant,
    'variant_count': e.variants | length,
} %}
select
    {%- for name, type in columns %}
    {{ experiment_literal(values[name], type) }} as {{ name }}{% if not loop.last %},{% endif %}
    {%- endfor %}
{{ "union all" if not loop.last }}
{%- endfor %}
-- noqa: enable=LT02
