{#- Items of an order a quality gate holds back are held with it, so no item lacks its order. -#}
with held_orders as (
    {{ quarantine_state('raw_app.orders') }}
),

source as (
    select items.*
    from {{ source('raw_app', 'order_items') }} as items
    left join held_orders on held_orders.row_key = items.order_id
    where coalesce(held_orders.is_held, 0) = 0
),

renamed as (
    select
        order_item_id,
        order_id,
        product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as numeric(18, 2)) as unit_price,
        cast(quantity * unit_price as numeric(18, 2)) as line_amount,
        cast(updated_at as timestamp) as updated_at
    from source
)

select * from renamed
