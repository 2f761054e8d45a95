{#- Each insight's drivers: the segments of a governed dimension and the metric's components that
    explain its change, with their share of it (ml/drivers.py). Empty until the insights asset runs. -#}
{%- set drivers = source('ml_insights', 'insight_drivers') -%}
{%- set written = adapter.get_relation(drivers.database, drivers.schema, drivers.identifier) if execute else none -%}

with drivers as (
    {%- if written is not none %}
    select * from {{ drivers }}
    where cast(tenant_id as {{ sql_type('varchar') }}) <> 'all'
    {%- else %}
    select
        cast(null as {{ sql_type('varchar') }}) as insight_key,
        cast(null as {{ sql_type('varchar') }}) as tenant_id,
        cast(null as {{ sql_type('varchar') }}) as metric,
        cast(null as date) as date_day,
        cast(null as {{ sql_type('varchar') }}) as driver_kind,
        cast(null as {{ sql_type('varchar') }}) as dimension,
        cast(null as {{ sql_type('varchar') }}) as dimension_label,
        cast(null as {{ sql_type('varchar') }}) as segment,
        0.0 as actual,
        0.0 as expected,
        0.0 as change,
        0.0 as share,
        0.0 as usual_share,
        0.0 as noise_ratio,
        false as is_new,
        0 as rank,
        cast(null as {{ sql_type('varchar') }}) as explanation
    where 1 = 0
    {%- endif %}
)

select
    {{ dbt.concat(["insight_key", "'|'", "driver_kind", "'|'", "dimension", "'|'", "segment"]) }} as driver_key,
    cast(insight_key as {{ sql_type('varchar') }}) as insight_key,
    cast(tenant_id as {{ sql_type('varchar') }}) as tenant_id,
    cast(metric as {{ sql_type('varchar') }}) as metric,
    cast(date_day as date) as insight_date,
    cast(driver_kind as {{ sql_type('varchar') }}) as driver_kind,
    cast(dimension as {{ sql_type('varchar') }}) as dimension,
    cast(dimension_label as {{ sql_type('varchar') }}) as dimension_label,
    cast(segment as {{ sql_type('varchar') }}) as segment,
    cast(actual as {{ sql_type('double precision') }}) as actual_value,
    cast(expected as {{ sql_type('double precision') }}) as expected_value,
    cast(change as {{ sql_type('double precision') }}) as change_value,
    cast(share as {{ sql_type('double precision') }}) as share_of_change,
    cast(usual_share as {{ sql_type('double precision') }}) as usual_share,
    cast(noise_ratio as {{ sql_type('double precision') }}) as noise_ratio,
    cast(is_new as boolean) as is_new,
    cast(rank as bigint) as driver_rank,
    cast(explanation as {{ sql_type('varchar') }}) as explanation
from drivers
