with source as (
    select * from {{ source('app', 'subscriptions') }}
),

renamed as (
    select
        subscription_id,
        tenant_id,
        user_id,
        plan,
        cast(mrr as numeric(18, 2)) as mrr,
        status as subscription_status,
        cast(started_at as timestamp) as started_at,
        cast(cancelled_at as timestamp) as cancelled_at,
        cast(updated_at as timestamp) as updated_at
    from source
)

select * from renamed
