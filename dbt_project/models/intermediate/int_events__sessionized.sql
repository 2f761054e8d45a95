{#- Sessions rebuilt from event times: a visitor's event starts a new session when it is the first
    of that visitor or comes more than `session_timeout_minutes` after their previous event.
    Client session ids are not trusted: apps lose and reuse them. Read from the event facts, which
    keep the events' history for as long as the marts' retention says (raw events are kept for less). -#}
with events as (
    select * from {{ ref('fct_events') }}
),

gaps as (
    select
        *,
        lag(event_at) over (partition by tenant_id, visitor_id order by event_at, event_id) as previous_event_at
    from events
),

flagged as (
    select
        *,
        case
            when previous_event_at is null then 1
            when
                {{ dbt.datediff('previous_event_at', 'event_at', 'second') }}
                > {{ var('session_timeout_minutes') }} * 60
                then 1
            else 0
        end as is_session_start
    from gaps
),

numbered as (
    select
        *,
        sum(is_session_start) over (
            partition by tenant_id, visitor_id
            order by event_at, event_id
            rows between unbounded preceding and current row
        ) as session_number
    from flagged
)

select
    {{ dbt.concat(['tenant_id', "'|'", 'visitor_id', "'|'", "cast(session_number as " ~ dbt.type_string() ~ ")"]) }}
        as session_key,
    session_number,
    event_id,
    event_type,
    event_at,
    event_date,
    tenant_id,
    visitor_id,
    user_id,
    client_session_id,
    order_id,
    revenue,
    device,
    country
from numbered
