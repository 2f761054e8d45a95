{#- Marketing spend per day, tenant, channel and campaign: the grain BI tools slice spend by. -#}
select
    spend_id,
    spend_date,
    tenant_id,
    channel,
    campaign,
    impressions,
    clicks,
    spend
from {{ ref('stg_marketing__spend') }}
