with source as (
    select * from {{ source('app', 'subscription_events') }}
),

renamed as (
    select
        subscription_event_id,
        subscription_id,
        event_type as change_type,
        plan,
        cast(mrr as numeric(18, 2)) as mrr,
        cast(effective_at as timestamp) as effective_at,
        cast(effective_at as date) as effective_date,
        cast(updated_at as timestamp) as updated_at
    from source
)

select * from renamed
