-- Feature-use events and distinct users per feature and day (marts.fct_events), per tenant and overall.
select event_date as day, tenant_id as tenant, feature, count(*) as uses, count(distinct user_id) as users
from marts.fct_events
where feature is not null
group by all
union all
select event_date, 'all', feature, count(*), count(distinct user_id)
from marts.fct_events
where feature is not null
group by all
