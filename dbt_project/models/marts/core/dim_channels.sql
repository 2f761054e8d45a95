{#- Every marketing channel, paid or not: the shared key that lets spend and signups be compared
    by channel (customer acquisition cost per channel). -#}
with channels as (
    select acquisition_channel as channel from {{ ref('stg_app__users') }}
    union
    select channel from {{ ref('stg_marketing__spend') }}
)

select
    channel,
    channel not in ('organic', 'referral') as is_paid
from channels
where channel is not null
