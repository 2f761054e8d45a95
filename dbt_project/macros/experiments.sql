{#- The experiment registry: the experiments declared under `meta.experiments` of dim_experiments
    (models/marts/experiments/experiments.yml), read from the parsed project.

    A declaration that cannot be read (a missing or mistyped key, a date that is not a date) stops the
    build with the experiment and the key at fault. A declaration that reads but cannot be analysed
    (one variant, a control that is not a variant) is built as declared: the analysis reports it for
    that experiment and goes on with the others. -#}

{% macro declared_experiments() %}
    {%- if not execute -%}{{ return([]) }}{%- endif -%}
    {%- set owners = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
                     | selectattr('name', 'equalto', 'dim_experiments') | list -%}
    {%- set declared = (owners[0].config.meta or {}).get('experiments', []) if owners else [] -%}
    {%- set where = 'models/marts/experiments/experiments.yml: meta.experiments' -%}
    {%- if declared is string or declared is mapping or declared is not iterable -%}
        {{ exceptions.raise_compiler_error(where ~ ' must be a list of experiments') }}
    {%- endif -%}
    {%- set allowed = ['experiment_id', 'tenant_id', 'name', 'hypothesis', 'primary_metric', 'secondary_metrics',
                       'start_date', 'stop_date', 'minimum_detectable_effect', 'conversion_window_days',
                       'alpha', 'power', 'variants', 'control_variant'] -%}
    {%- set checked = [] -%}
    {%- set seen = [] -%}
    {%- for e in declared -%}
        {%- set at = where ~ '[' ~ loop.index0 ~ ']' -%}
        {%- if e is not mapping -%}{{ exceptions.raise_compiler_error(at ~ ' must be a mapping of keys') }}{%- endif -%}
        {%- set at = at ~ ' (' ~ (e.get('experiment_id') or 'no experiment_id') ~ ')' -%}
        {%- for key in e if key not in allowed -%}
            {{ exceptions.raise_compiler_error(at ~ ': unknown key ' ~ key ~ '; the keys are ' ~ allowed | join(', ')) }}
        {%- endfor -%}
        {%- for key in ['experiment_id', 'tenant_id', 'primary_metric'] -%}
            {%- if e.get(key) is not string or not modules.re.fullmatch('[A-Za-z0-9_.-]+', e.get(key)) -%}
                {{ exceptions.raise_compiler_error(at ~ ': ' ~ key ~ ' must be a name (letters, digits, _ . -), got ' ~ e.get(key)) }}
            {%- endif -%}
        {%- endfor -%}
        {%- if e.experiment_id in seen -%}
            {{ exceptions.raise_compiler_error(at ~ ': experiment_id is declared twice') }}
        {%- endif -%}
        {%- do seen.append(e.experiment_id) -%}
        {%- set secondary = e.get('secondary_metrics') or [] -%}
        {%- if secondary is string or secondary is mapping or secondary is not iterable
               or secondary | reject('string') | list | length > 0 -%}
            {{ exceptions.raise_compiler_error(at ~ ': secondary_metrics must be a list of metric names') }}
        {%- endif -%}
        {%- set variants = e.get('variants') -%}
        {%- if variants is not mapping or variants | length == 0 -%}
            {{ exceptions.raise_compiler_error(at ~ ': variants must map each variant name to its traffic weight, e.g. {control: 50, treatment: 50}') }}
        {%- endif -%}
        {%- for name, weight in variants.items() -%}
            {%- if weight is not number or weight <= 0 -%}
                {{ exceptions.raise_compiler_error(at ~ ': variants.' ~ name ~ ' must be a positive traffic weight, got ' ~ weight) }}
            {%- endif -%}
        {%- endfor -%}
        {%- set dates = {} -%}
        {%- for key in ['start_date', 'stop_date'] if e.get(key) is not none -%}
            {%- set value = e.get(key) | string -%}
            {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value) -%}
                {{ exceptions.raise_compiler_error(at ~ ': ' ~ key ~ ' must be a date (YYYY-MM-DD), got ' ~ value) }}
            {%- endif -%}
            {%- do dates.update({key: value}) -%}
        {%- endfor -%}
        {%- if dates.get('start_date') and dates.get('stop_date') and dates.stop_date < dates.start_date -%}
            {{ exceptions.raise_compiler_error(at ~ ': stop_date ' ~ dates.stop_date ~ ' is before start_date ' ~ dates.start_date) }}
        {%- endif -%}
        {%- set numbers = {'minimum_detectable_effect': [0.1, 0, 10], 'alpha': [0.05, 0, 0.5], 'power': [0.8, 0, 1],
                           'conversion_window_days': [14, 0, 3650]} -%}
        {%- set values = {} -%}
        {%- for key, spec in numbers.items() -%}
            {%- set value = e.get(key, spec[0]) -%}
            {%- if value is not number or value is boolean or value <= spec[1] or value >= spec[2] -%}
                {{ exceptions.raise_compiler_error(at ~ ': ' ~ key ~ ' must be a number above ' ~ spec[1] ~ ' and below ' ~ spec[2] ~ ', got ' ~ value) }}
            {%- endif -%}
            {%- do values.update({key: value}) -%}
        {%- endfor -%}
        {%- if values.conversion_window_days != values.conversion_window_days | int -%}
            {{ exceptions.raise_compiler_error(at ~ ': conversion_window_days must be a whole number of days') }}
        {%- endif -%}
        {%- do checked.append({
            'experiment_id': e.experiment_id, 'tenant_id': e.tenant_id, 'name': e.get('name') or e.experiment_id,
            'hypothesis': e.get('hypothesis'), 'primary_metric': e.primary_metric, 'secondary_metrics': secondary,
            'start_date': dates.get('start_date'), 'stop_date': dates.get('stop_date'),
            'minimum_detectable_effect': values.minimum_detectable_effect, 'alpha': values.alpha, 'power': values.power,
            'conversion_window_days': values.conversion_window_days | int, 'variants': variants,
            'control_variant': e.get('control_variant') or (variants.keys() | first)}) -%}
    {%- endfor -%}
    {{ return(checked) }}
{% endmacro %}

{#- A SQL literal of a declared value: a quoted string, a number or null, cast to `type`. -#}
{% macro experiment_literal(value, type) -%}
    {%- if value is none -%}cast(null as {{ sql_type(type) }})
    {%- elif value is number -%}cast({{ value }} as {{ sql_type(type) }})
    {%- else -%}cast('{{ value | string | replace("'", "''") }}' as {{ sql_type(type) }})
    {%- endif -%}
{%- endmacro %}

{#- The columns the experiment analysis writes (ml/experiments/analysis.py) and their types: the
    marts over its tables cast to these, and stand empty, typed, until it has run once. -#}
{% macro experiment_analysis_columns(table) -%}
    {%- set shared = [('experiment_id', 'varchar'), ('tenant_id', 'varchar'), ('analysis_date', 'date')] -%}
    {%- if table == 'results' -%}
        {%- set columns = shared + [
            ('variant', 'varchar'), ('is_control', 'boolean'), ('metric', 'varchar'), ('metric_label', 'varchar'),
            ('metric_role', 'varchar'), ('users', 'bigint'), ('mean', 'double precision'),
            ('absolute_lift', 'double precision'), ('absolute_lower', 'double precision'),
            ('absolute_upper', 'double precision'), ('relative_lift', 'double precision'),
            ('relative_lower', 'double precision'), ('relative_upper', 'double precision'),
            ('p_value', 'double precision'), ('adjusted_p_value', 'double precision'),
            ('cuped_relative_lift', 'double precision'), ('cuped_relative_lower', 'double precision'),
            ('cuped_relative_upper', 'double precision'), ('variance_reduction', 'double precision'),
            ('sequential_lower', 'double precision'), ('sequential_upper', 'double precision'),
            ('chance_to_win', 'double precision'), ('users_needed_per_variant', 'double precision')] -%}
    {%- else -%}
        {%- set columns = shared + [
            ('experiment_name', 'varchar'), ('status', 'varchar'), ('decision', 'varchar'), ('notes', 'varchar'),
            ('primary_metric', 'varchar'), ('first_exposure_date', 'date'), ('users', 'bigint'),
            ('users_per_variant', 'varchar'), ('users_excluded_multiple_variants', 'bigint'),
            ('users_excluded_undeclared_variant', 'bigint'), ('users_excluded_outside_dates', 'bigint'),
            ('conversions_before_exposure', 'bigint'), ('srm_p_value', 'double precision'),
            ('srm_detected', 'boolean'), ('users_needed_per_variant', 'double precision')] -%}
    {%- endif -%}
    {{ return(columns) }}
{%- endmacro %}

{#- The rows of one of the analysis' tables with every column cast to its type; no rows (but the
    columns) before the analysis has written it. -#}
{% macro experiment_analysis_rows(table) -%}
    {%- set relation = source('experiment_analysis', table) -%}
    {%- set written = adapter.get_relation(relation.database, relation.schema, relation.identifier) if execute else none -%}
    select
    {%- for name, type in experiment_analysis_columns(table) %}
        {%- if written is not none %}
        cast({{ adapter.quote(name) }} as {{ sql_type(type) }}) as {{ name }}{{ "," if not loop.last }}
        {%- else %}
        cast(null as {{ sql_type(type) }}) as {{ name }}{{ "," if not loop.last }}
        {%- endif %}
    {%- endfor %}
    {%- if written is not none %}
    from {{ relation }}
    {%- else %}
    where 1 = 0
    {%- endif %}
{%- endmacro %}
