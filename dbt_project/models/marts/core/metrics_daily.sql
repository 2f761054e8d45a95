{#- The daily business metrics per tenant: one row for every tenant on every day of the activity
    window, zeros where nothing happened, so series have no holes. -#}
with window_bounds as (
    select * from {{ ref('int_calendar__activity_window') }}
),

grid as (
    select
        spine.date_day,
        tenants.tenant_id
    from {{ ref('time_spine_daily') }} as spine
    cross join window_bounds
    cross join {{ ref('dim_tenants') }} as tenants
    where spine.date_day between window_bounds.first_date and window_bounds.last_date
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

signups as (
    select
        signup_date as date_day,
        tenant_id,
        count(*) as new_users
    from {{ ref('dim_users') }}
    group by 1, 2
),

mrr as (
    select
        date_day,
        tenant_id,
        sum(mrr) as mrr,
        count(*) as active_subscriptions
    from {{ ref('int_subscriptions__mrr_daily') }}
    group by 1, 2
),

churn as (
    select
        events.effective_date as date_day,
        subscriptions.tenant_id,
        count(*) as churned_subscriptions
    from {{ ref('stg_app__subscription_events') }} as events
    inner join {{ ref('stg_app__subscriptions') }} as subscriptions
        on events.subscription_id = subscriptions.subscription_id
    where events.change_type = 'cancelled'
    group by 1, 2
),

spend as (
    select
        spend_date as date_day,
        tenant_id,
        sum(spend) as marketing_spend
    from {{ ref('fct_marketing_spend') }}
    group by 1, 2
)

select
    {{ dbt.concat(["cast(grid.date_day as " ~ dbt.type_string() ~ ")", "'|'", 'grid.tenant_id']) }}
        as metrics_daily_key,
    grid.date_day,
    grid.tenant_id,
    cast(coalesce(events.active_users, 0) as bigint) as active_users,
    cast(coalesce(signups.new_users, 0) as bigint) as new_users,
    cast(coalesce(sessions.sessions, 0) as bigint) as sessions,
    cast(coalesce(events.events, 0) as bigint) as events,
    cast(coalesce(events.errors, 0) as bigint) as errors,
    cast(coalesce(orders.orders, 0) as bigint) as orders,
    cast(coalesce(orders.revenue, 0) as numeric(18, 2)) as revenue,
    cast(orders.revenue / nullif(orders.revenue_orders, 0) as numeric(18, 2)) as average_order_value,
    cast(sessions.converted_sessions as double precision) / nullif(sessions.sessions, 0) as conversion_rate,
    cast(coalesce(mrr.mrr, 0) as numeric(18, 2)) as mrr,
    cast(coalesce(mrr.active_subscriptions, 0) as bigint) as active_subscriptions,
    cast(coalesce(churn.churned_subscriptions, 0) as bigint) as churned_subscriptions,
    cast(coalesce(spend.marketing_spend, 0) as numeric(18, 2)) as marketing_spend
from grid
left join events on grid.date_day = events.date_day and grid.tenant_id = events.tenant_id
left join sessions on grid.date_day = sessions.date_day and grid.tenant_id = sessions.tenant_id
left join orders on grid.date_day = orders.date_day and grid.tenant_id = orders.tenant_id
left join signups on grid.date_day = signups.date_day and grid.tenant_id = signups.tenant_id
left join mrr on grid.date_day = mrr.date_day and grid.tenant_id = mrr.tenant_id
left join churn on grid.date_day = churn.date_day and grid.tenant_id = churn.tenant_id
left join spend on grid.date_day = spend.date_day and grid.tenant_id = spend.tenant_id
