with source as (
    select * from {{ source('marketing', 'spend') }}
),

renamed as (
    select
        {{ dbt.concat([
            "cast(date as " ~ dbt.type_string() ~ ")", "'|'", 'tenant_id', "'|'", 'channel', "'|'", 'campaign'
        ]) }} as spend_id,
        cast(date as date) as spend_date,
        tenant_id,
        channel,
        campaign,
        cast(impressions as bigint) as impressions,
        cast(clicks as bigint) as clicks,
        cast(spend as numeric(18, 2)) as spend
    from source
)

select * from renamed
