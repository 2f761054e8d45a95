{#- The daily business metrics per tenant: one row for every tenant on every day of the activity
    window, zeros where nothing happened, so series have no holes. Subscriptions and acquisition come
    aggregated per tenant and day from their intermediate models. -#}
with grid as (
    select * from {{ ref('int_calendar__tenant_days') }}
),

events as (
    select
        event_date as date_day,
        tenant_id,
        count(distinct user_id) as active_users,
        count(*) as events,
        sum(case when event_type = 'error' then 1 else 0 end) as errors
    from {{ ref('fct_events') }}
    group by 1, 2
),

sessions as (
    select
        session_date as date_day,
        tenant_id,
        count(*) as sessions,
        sum(case when is_converted then 1 else 0 end) as converted_sessions
    from {{ ref('fct_sessions') }}
    group by 1, 2
),

orders as (
    select
        order_date as date_day,
        tenant_id,
        sum(case when order_status <> 'cancelled' then 1 else 0 end) as orders,
        sum(case when is_revenue then 1 else 0 end) as revenue_orders,
        sum(net_revenue) as revenue
    from {{ ref('fct_orders') }}
    group by 1, 2
),

subscriptions as (
    select * from {{ ref('int_subscriptions__daily') }}
),

acquisition as (
    select * from {{ ref('int_acquisition__daily') }}
)

select
    grid.tenant_day_key as metrics_daily_key,
    grid.date_day,
    grid.tenant_id,
    cast(coalesce(events.active_users, 0) as bigint) as active_users,
    cast(coalesce(acquisition.new_users, 0) as bigint) as new_users,
    cast(coalesce(sessions.sessions, 0) as bigint) as sessions,
    cast(coalesce(events.events, 0) as bigint) as events,
    cast(coalesce(events.errors, 0) as bigint) as errors,
    cast(coalesce(orders.orders, 0) as bigint) as orders,
    cast(coalesce(orders.revenue, 0) as numeric(18, 2)) as revenue,
    cast(orders.revenue / nullif(orders.revenue_orders, 0) as numeric(18, 2)) as average_order_value,
    cast(sessions.converted_sessions as {{ sql_type('double precision') }})
    / nullif(sessions.sessions, 0) as conversion_rate,
    cast(coalesce(subscriptions.mrr, 0) as numeric(18, 2)) as mrr,
    cast(coalesce(subscriptions.active_subscriptions, 0) as bigint) as active_subscriptions,
    cast(coalesce(subscriptions.churned_subscriptions, 0) as bigint) as churned_subscriptions,
    cast(coalesce(acquisition.marketing_spend, 0) as numeric(18, 2)) as marketing_spend
from grid
left join events on grid.date_day = events.date_day and grid.tenant_id = events.tenant_id
left join sessions on grid.date_day = sessions.date_day and grid.tenant_id = sessions.tenant_id
left join orders on grid.date_day = orders.date_day and grid.tenant_id = orders.tenant_id
left join subscriptions on grid.date_day = subscriptions.date_day and grid.tenant_id = subscriptions.tenant_id
left join acquisition on grid.date_day = acquisition.date_day and grid.tenant_id = acquisition.tenant_id
