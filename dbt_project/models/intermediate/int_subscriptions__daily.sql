{#- Each tenant's subscriptions per day: MRR and active subscriptions at the end of the day (from the
    rebuilt MRR history) and the subscriptions cancelled that day. Only days with either appear. -#}
with balances as (
    select
        date_day,
        tenant_id,
        sum(mrr) as mrr,
        count(*) as active_subscriptions,
        0 as churned_subscriptions
    from {{ ref('int_subscriptions__mrr_daily') }}
    group by date_day, tenant_id
),

cancellations as (
    select
        changes.effective_date as date_day,
        subscriptions.tenant_id,
        0 as mrr,
        0 as active_subscriptions,
        count(*) as churned_subscriptions
    from {{ ref('stg_app__subscription_events') }} as changes
    inner join {{ ref('stg_app__subscriptions') }} as subscriptions
        on changes.subscription_id = subscriptions.subscription_id
    where changes.change_type = 'cancelled'
    group by changes.effective_date, subscriptions.tenant_id
),

combined as (
    select * from balances
    union all
    select * from cancellations
)

select
    {{ dbt.concat(["cast(date_day as " ~ dbt.type_string() ~ ")", "'|'", 'tenant_id']) }} as tenant_day_key,
    date_day,
    tenant_id,
    sum(mrr) as mrr,
    sum(active_subscriptions) as active_subscriptions,
    sum(churned_subscriptions) as churned_subscriptions
from combined
group by date_day, tenant_id
