with source as (
    select * from {{ source('app', 'users') }}
),

renamed as (
    select
        user_id,
        tenant_id,
        email_domain,
        cast(signup_at as timestamp) as signup_at,
        cast(signup_at as date) as signup_date,
        plan,
        country,
        device,
        acquisition_channel,
        cast(updated_at as timestamp) as updated_at
    from source
)

select * from renamed
