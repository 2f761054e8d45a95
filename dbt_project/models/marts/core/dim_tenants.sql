with tenants as (
    select * from {{ ref('stg_app__tenants') }}
),

users as (
    select
        tenant_id,
        count(*) as user_count
    from {{ ref('stg_app__users') }}
    group by tenant_id
)

select
    tenants.tenant_id,
    tenants.tenant_name,
    tenants.industry,
    tenants.tenant_country,
    tenants.tenant_tier,
    tenants.created_at,
    cast(coalesce(users.user_count, 0) as bigint) as user_count
from tenants
left join users on tenants.tenant_id = users.tenant_id
