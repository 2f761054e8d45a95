{#- Items of an order a quality gate holds back are held with it, so no item lacks its order. -#}
with source as (
    {{ rows_not_held(source('app', 'order_items'), 'order_id', 'raw_app.orders') }}
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
