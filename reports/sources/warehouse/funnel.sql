-- Sessions reaching each funnel step per day (marts.funnel_daily), per tenant and for all tenants.
select date_day as day, tenant_id as tenant, step_number, step_name, cast(sessions as bigint) as sessions
from marts.funnel_daily
union all
select date_day, 'all', step_number, step_name, cast(sum(sessions) as bigint)
from marts.funnel_daily
group by date_day, step_number, step_name
