-- The champion model's forecasts with their 80 % and 95 % intervals (ml.forecast_daily), and the
-- actuals of the same metric and tenant (marts.metrics_daily) for the weeks before them.
with actuals as (
    select date_day as day, tenant_id as tenant, metric, value
    from marts.metrics_daily
    unpivot (value for metric in (revenue, orders, active_users, sessions, errors))
),
all_actuals as (
    select * from actuals
    union all
    select day, 'all', metric, sum(value) from actuals group by day, metric
),
horizon as (select min(forecast_date) as first_day from ml.forecast_daily)
select a.day, a.tenant, a.metric, cast(a.value as double) as actual,
       null::double as prediction, null::double as lower_80, null::double as upper_80,
       null::double as lower_95, null::double as upper_95, null::varchar as model_version
from all_actuals a, horizon
where a.day >= horizon.first_day - interval 56 day
union all
select forecast_date, tenant_id, metric, null, prediction, lower_80, upper_80, lower_95, upper_95, model_version
from ml.forecast_daily
