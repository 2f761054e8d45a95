with events as (
    select * from {{ ref('int_events__sessionized') }}
)

select
    session_key,
    tenant_id,
    visitor_id,
    max(user_id) as user_id,
    max(user_id) is null as is_anonymous,
    min(client_session_id) as client_session_id,
    min(event_at) as started_at,
    max(event_at) as ended_at,
    min(event_date) as session_date,
    -- LT05 is waived: sqlfluff measures this line with the macro's rendering, which spans several lines
    cast({{ dbt.datediff('min(event_at)', 'max(event_at)', 'second') }} as bigint) as duration_seconds,  -- noqa: LT05
    cast(count(*) as bigint) as event_count,
    cast(sum(case when event_type = 'page_view' then 1 else 0 end) as bigint) as page_views,
    max(case when event_type = 'add_to_cart' then 1 else 0 end) = 1 as has_add_to_cart,
    max(case when event_type = 'checkout_started' then 1 else 0 end) = 1 as has_checkout_started,
    max(case when event_type = 'checkout_completed' then 1 else 0 end) = 1 as is_converted,
    cast(sum(case when event_type = 'checkout_completed' then 1 else 0 end) as bigint) as orders,
    cast(coalesce(sum(case when event_type = 'checkout_completed' then revenue end), 0) as numeric(18, 2)) as revenue,
    max(device) as device,
    max(country) as country
from events
group by session_key, tenant_id, visitor_id
