with source as (
    select * from {{ source('app', 'products') }}
),

renamed as (
    select
        product_id,
        tenant_id,
        name as product_name,
        category,
        cast(price as numeric(18, 2)) as price,
        cast(updated_at as timestamp) as updated_at
    from source
)

select * from renamed
