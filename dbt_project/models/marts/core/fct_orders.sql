with orders as (
    select * from {{ ref('stg_app__orders') }}
),

items as (
    select
        order_id,
        count(*) as item_count,
        sum(quantity) as quantity,
        sum(line_amount) as items_amount
    from {{ ref('stg_app__order_items') }}
    group by order_id
)

select
    orders.order_id,
    orders.tenant_id,
    orders.user_id,
    orders.order_status,
    orders.ordered_at,
    orders.order_date,
    cast(coalesce(items.item_count, 0) as bigint) as item_count,
    cast(coalesce(items.quantity, 0) as bigint) as quantity,
    orders.order_total,
    orders.order_status = 'completed' as is_revenue,
    cast(case when orders.order_status = 'completed' then orders.order_total else 0 end as numeric(18, 2))
        as net_revenue,
    orders.updated_at
from orders
left join items on orders.order_id = items.order_id
