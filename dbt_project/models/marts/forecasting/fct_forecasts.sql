{#- Tenant forecasts of the daily metrics, the grain the semantic layer sums over. The all-tenant
    series (tenant_id 'all') stay in ml.forecast_daily: summed with the tenants they would count twice.
    Until the forecasting assets have run once, ml.forecast_daily does not exist and this mart is
    empty rather than failing the build (a first `dbt build` in CI, say). -#}
{%- set forecast_daily = source('ml', 'forecast_daily') -%}
{%- set written = adapter.get_relation(
    forecast_daily.database, forecast_daily.schema, forecast_daily.identifier
) if execute else none -%}

with forecasts as (
    {%- if written is not none %}
    select * from {{ forecast_daily }}
    where tenant_id <> 'all'
    {%- else %}
    select
        cast(null as date) as forecast_date,
        cast(null as {{ sql_type('varchar') }}) as tenant_id,
        cast(null as {{ sql_type('varchar') }}) as metric,
        0.0 as prediction,
        0.0 as lower_80,
        0.0 as upper_80,
        0.0 as lower_95,
        0.0 as upper_95,
        0 as horizon,
        cast(null as date) as origin_date,
        '' as model_name,
        '' as model_version
    where 1 = 0
    {%- endif %}
)

select
    {{ dbt.concat([
        "tenant_id", "'|'", "metric", "'|'", dbt.safe_cast("cast(forecast_date as date)", dbt.type_string())
    ]) }} as forecast_key,
    cast(forecast_date as date) as forecast_date,
    cast(tenant_id as {{ sql_type('varchar') }}) as tenant_id,
    cast(metric as {{ sql_type('varchar') }}) as metric,
    cast(prediction as {{ sql_type('double precision') }}) as prediction,
    cast(lower_80 as {{ sql_type('double precision') }}) as lower_80,
    cast(upper_80 as {{ sql_type('double precision') }}) as upper_80,
    cast(lower_95 as {{ sql_type('double precision') }}) as lower_95,
    cast(upper_95 as {{ sql_type('double precision') }}) as upper_95,
    cast(horizon as bigint) as horizon,
    cast(origin_date as date) as origin_date,
    cast({{ dbt.concat(["model_name", "' '", "model_version"]) }} as {{ sql_type('varchar') }}) as model_version
from forecasts
