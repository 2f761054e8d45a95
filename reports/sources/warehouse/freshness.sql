-- How recent the data is: newest event and load per tenant (marts.fct_events), and when the
-- snapshot these reports read was published (its rollups' build time).
select tenant_id as tenant, cast(max(event_at) as timestamp) as newest_event,
       cast(max(loaded_at) as timestamp) as newest_load, count(*) as events,
       (select cast(max(built_at) as timestamp) from rollups._catalog) as published_at
from marts.fct_events
group by tenant_id
union all
select 'all', cast(max(event_at) as timestamp), cast(max(loaded_at) as timestamp), count(*),
       (select cast(max(built_at) as timestamp) from rollups._catalog)
from marts.fct_events
