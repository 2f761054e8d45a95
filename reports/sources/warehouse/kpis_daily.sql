-- The governed metrics per day, as MetricFlow computed them from the dbt semantic models into the
-- published rollup `rollups.daily_kpis`, per tenant and for all tenants (tenant 'all').
-- All tenants re-aggregate the way rollups do: sums add up; ratios divide their added parts; MRR
-- and active subscriptions are end-of-day balances, which add up across tenants on the same day;
-- active users add up because a user belongs to one tenant.
with per_tenant as (
    select
        metric_time__day as day,
        tenant,
        cast(revenue as double) as revenue,
        cast(orders as bigint) as orders,
        cast(revenue_orders as bigint) as revenue_orders,
        cast(active_users as bigint) as active_users,
        cast(new_users as bigint) as new_users,
        cast(sessions as bigint) as sessions,
        cast(mrr as double) as mrr,
        cast(churned_subscriptions as bigint) as churned_subscriptions,
        cast(active_subscriptions as bigint) as active_subscriptions
    from rollups.daily_kpis
)
select * from per_tenant
union all
select
    day, 'all', sum(revenue), sum(orders), sum(revenue_orders), sum(active_users), sum(new_users),
    sum(sessions), sum(mrr), sum(churned_subscriptions), sum(active_subscriptions)
from per_tenant
group by day
