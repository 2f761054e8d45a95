{#- The first and last day with product activity: daily marts span exactly this window. -#}
select
    min(event_date) as first_date,
    max(event_date) as last_date
from {{ ref('stg_events__events') }}
