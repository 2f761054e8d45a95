{#- What each analysed user did, day by day: the orders, revenue, sessions and conversions of their
    conversion window after exposure (`is_pre_exposure` false), and of as many days before it (true,
    the covariates that CUPED adjusts with). One row per user, day and side of the exposure that had
    any of them; the analysis adds a user's days up to each day it looks at the experiment.

    The facts are the governed metrics' own (models/marts/core/_core__semantic.yml): orders placed
    but not cancelled, net revenue of completed orders, sessions and converted sessions, events. A session
    counts after exposure if it was still going on when the user was exposed (the session of the
    assignment), and on the exposure day. Conversions are the experiment's own experiment_converted
    events, the first one in the window; one logged before the exposure is not an outcome. -#}
with experiments as (
    select * from {{ ref('dim_experiments') }}
),

exposures as (
    select
        exposures.experiment_user_key,
        exposures.experiment_id,
        exposures.tenant_id,
        exposures.user_id,
        exposures.variant,
        exposures.exposed_at,
        exposures.window_end_at,
        {{ dbt.dateadd('day', '-1 * experiments.conversion_window_days', 'exposures.exposed_at') }} as pre_start_at
    from {{ ref('fct_experiment_exposures') }} as exposures
    inner join experiments on experiments.experiment_id = exposures.experiment_id
    where exposures.exclusion_reason is null
),

orders as (
    select
        exposures.experiment_user_key,
        cast(orders.ordered_at as date) as activity_date,
        orders.ordered_at < exposures.exposed_at as is_pre_exposure,
        case when orders.order_status <> 'cancelled' then 1 else 0 end as orders,
        orders.net_revenue as revenue,
        case when orders.is_revenue then 1 else 0 end as completed_orders,
        0 as sessions,
        0 as converted_sessions,
        0 as events,
        0 as converted
    from {{ ref('fct_orders') }} as orders
    inner join exposures
        on exposures.user_id = orders.user_id
        and exposures.tenant_id = orders.tenant_id
        and orders.ordered_at >= exposures.pre_start_at
        and orders.ordered_at < exposures.window_end_at
),

sessions as (
    select
        exposures.experiment_user_key,
        cast(case when sessions.ended_at < exposures.exposed_at then sessions.started_at
                  when sessions.started_at < exposures.exposed_at then exposures.exposed_at
                  else sessions.started_at end as date) as activity_date,
        sessions.ended_at < exposures.exposed_at as is_pre_exposure,
        0 as orders,
        cast(0 as numeric(18, 2)) as revenue,
        0 as completed_orders,
        1 as sessions,
        case when sessions.is_converted then 1 else 0 end as converted_sessions,
        0 as events,
        0 as converted
    from {{ ref('fct_sessions') }} as sessions
    inner join exposures
        on exposures.user_id = sessions.user_id
        and exposures.tenant_id = sessions.tenant_id
        and sessions.started_at >= exposures.pre_start_at
        and sessions.started_at < exposures.window_end_at
),

conversions as (
    select
        exposures.experiment_user_key,
        cast(min(events.event_at) as date) as activity_date,
        false as is_pre_exposure,
        0 as orders,
        cast(0 as numeric(18, 2)) as revenue,
        0 as completed_orders,
        0 as sessions,
        0 as converted_sessions,
        0 as events,
        1 as converted
    from {{ ref('fct_events') }} as events
    inner join exposures
        on exposures.experiment_id = events.experiment_id
        and exposures.user_id = events.user_id
        and events.event_at >= exposures.exposed_at
        and events.event_at < exposures.window_end_at
    where events.event_type = 'experiment_converted'
    group by exposures.experiment_user_key
),

events as (
    select
        exposures.experiment_user_key,
        events.event_date as activity_date,
        events.event_at < exposures.exposed_at as is_pre_exposure,
        0 as orders,
        cast(0 as numeric(18, 2)) as revenue,
        0 as completed_orders,
        0 as sessions,
        0 as converted_sessions,
        count(*) as events,
        0 as converted
    from {{ ref('fct_events') }} as events
    inner join exposures
        on exposures.user_id = events.user_id
        and exposures.tenant_id = events.tenant_id
        and events.event_at >= exposures.pre_start_at
        and events.event_at < exposures.window_end_at
    group by exposures.experiment_user_key, events.event_date, events.event_at < exposures.exposed_at
),

facts as (
    select * from orders
    union all
    select * from sessions
    union all
    select * from conversions
    union all
    select * from events
)

select
    {{ dbt.concat(["exposures.experiment_user_key", "'|'",
                   dbt.safe_cast("facts.activity_date", dbt.type_string()), "'|'",
                   "case when facts.is_pre_exposure then 'pre' else 'post' end"]) }} as outcome_day_key,
    exposures.experiment_user_key,
    exposures.experiment_id,
    exposures.tenant_id,
    exposures.user_id,
    exposures.variant,
    facts.activity_date,
    facts.is_pre_exposure,
    cast(sum(facts.converted) as bigint) as converted,
    cast(sum(facts.orders) as bigint) as orders,
    cast(sum(facts.revenue) as numeric(18, 2)) as revenue,
    cast(sum(facts.completed_orders) as bigint) as completed_orders,
    cast(sum(facts.sessions) as bigint) as sessions,
    cast(sum(facts.converted_sessions) as bigint) as converted_sessions,
    cast(sum(facts.events) as bigint) as events
from facts
inner join exposures on exposures.experiment_user_key = facts.experiment_user_key
group by
    exposures.experiment_user_key, exposures.experiment_id, exposures.tenant_id, exposures.user_id,
    exposures.variant, facts.activity_date, facts.is_pre_exposure
