{#- The first and last day with product activity: daily marts span exactly this window. From the
    event facts, which keep the history (raw events are kept for less: orchestration/retention.yml). -#}
select
    min(event_date) as first_date,
    max(event_date) as last_date
from {{ ref('fct_events') }}
