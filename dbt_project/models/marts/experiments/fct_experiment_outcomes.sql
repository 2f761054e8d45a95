{#- One row per analysed user of each experiment (exposures the analysis keeps): their outcomes over
    the conversion window after exposure, and the same facts over as many days before it (`pre_`),
    which CUPED uses to take the users' own differences out of the comparison. The experiment
    metrics of the semantic layer (_experiments__semantic.yml) are sums and ratios of these columns. -#}
with exposures as (
    select * from {{ ref('fct_experiment_exposures') }}
    where exclusion_reason is null
),

daily as (
    select * from {{ ref('fct_experiment_outcomes_daily') }}
),

totals as (
    select
        experiment_user_key,
        sum(case when not is_pre_exposure then converted else 0 end) as conversions,
        sum(case when not is_pre_exposure then orders else 0 end) as orders,
        sum(case when not is_pre_exposure then revenue else 0 end) as revenue,
        sum(case when not is_pre_exposure then completed_orders else 0 end) as completed_orders,
        sum(case when not is_pre_exposure then sessions else 0 end) as sessions,
        sum(case when not is_pre_exposure then converted_sessions else 0 end) as converted_sessions,
        sum(case when not is_pre_exposure then events else 0 end) as events,
        sum(case when is_pre_exposure then orders else 0 end) as pre_orders,
        sum(case when is_pre_exposure then revenue else 0 end) as pre_revenue,
        sum(case when is_pre_exposure then completed_orders else 0 end) as pre_completed_orders,
        sum(case when is_pre_exposure then sessions else 0 end) as pre_sessions,
        sum(case when is_pre_exposure then converted_sessions else 0 end) as pre_converted_sessions,
        sum(case when is_pre_exposure then events else 0 end) as pre_events
    from daily
    group by experiment_user_key
)

select
    exposures.experiment_user_key,
    exposures.experiment_id,
    exposures.tenant_id,
    exposures.user_id,
    exposures.variant,
    exposures.exposed_at,
    exposures.exposure_date,
    exposures.window_end_at,
    cast(case when coalesce(totals.conversions, 0) > 0 then 1 else 0 end as bigint) as converted,
    cast(coalesce(totals.orders, 0) as bigint) as orders,
    cast(coalesce(totals.revenue, 0) as numeric(18, 2)) as revenue,
    cast(coalesce(totals.completed_orders, 0) as bigint) as completed_orders,
    cast(coalesce(totals.sessions, 0) as bigint) as sessions,
    cast(coalesce(totals.converted_sessions, 0) as bigint) as converted_sessions,
    cast(coalesce(totals.events, 0) as bigint) as events,
    cast(case when coalesce(totals.pre_orders, 0) > 0 then 1 else 0 end as bigint) as pre_converted,
    cast(coalesce(totals.pre_orders, 0) as bigint) as pre_orders,
    cast(coalesce(totals.pre_revenue, 0) as numeric(18, 2)) as pre_revenue,
    cast(coalesce(totals.pre_completed_orders, 0) as bigint) as pre_completed_orders,
    cast(coalesce(totals.pre_sessions, 0) as bigint) as pre_sessions,
    cast(coalesce(totals.pre_converted_sessions, 0) as bigint) as pre_converted_sessions,
    cast(coalesce(totals.pre_events, 0) as bigint) as pre_events
from exposures
left join totals on totals.experiment_user_key = exposures.experiment_user_key
