with users as (
    select * from {{ ref('stg_app__users') }}
),

orders as (
    select
        user_id,
        min(ordered_at) as first_ordered_at,
        count(*) as lifetime_orders,
        sum(net_revenue) as lifetime_revenue
    from {{ ref('fct_orders') }}
    group by user_id
),

subscriptions as (
    select
        user_id,
        plan,
        mrr,
        subscription_status,
        row_number() over (partition by user_id order by started_at desc, subscription_id desc) as recency
    from {{ ref('stg_app__subscriptions') }}
)

select
    users.user_id,
    users.tenant_id,
    users.signup_at,
    users.signup_date,
    users.plan,
    users.country,
    users.device,
    users.acquisition_channel,
    subscriptions.subscription_status,
    cast(case when subscriptions.subscription_status = 'active' then subscriptions.mrr else 0 end as numeric(18, 2))
        as current_mrr,
    orders.first_ordered_at,
    cast(coalesce(orders.lifetime_orders, 0) as bigint) as lifetime_orders,
    cast(coalesce(orders.lifetime_revenue, 0) as numeric(18, 2)) as lifetime_revenue
from users
left join orders on users.user_id = orders.user_id
left join subscriptions on users.user_id = subscriptions.user_id and subscriptions.recency = 1
