{#- Each tenant's acquisition per day: users who signed up and marketing spend. Only days with either appear. -#}
with signups as (
    select
        signup_date as date_day,
        tenant_id,
        count(*) as new_users,
        0 as marketing_spend
    from {{ ref('dim_users') }}
    group by signup_date, tenant_id
),

spend as (
    select
        spend_date as date_day,
        tenant_id,
        0 as new_users,
        sum(spend) as marketing_spend
    from {{ ref('fct_marketing_spend') }}
    group by spend_date, tenant_id
),

combined as (
    select * from signups
    union all
    select * from spend
)

select
    {{ dbt.concat(["cast(date_day as " ~ dbt.type_string() ~ ")", "'|'", 'tenant_id']) }} as tenant_day_key,
    date_day,
    tenant_id,
    sum(new_users) as new_users,
    sum(marketing_spend) as marketing_spend
from combined
group by date_day, tenant_id
