with source as (
    select * from {{ source('app', 'tenants') }}
),

renamed as (
    select
        tenant_id,
        name as tenant_name,
        industry,
        country as tenant_country,
        tier as tenant_tier,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at
    from source
)

select * from renamed
