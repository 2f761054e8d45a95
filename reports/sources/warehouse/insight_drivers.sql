-- What drove each insight (marts.fct_insight_drivers): the segments of a governed dimension and the metric's
-- components with their share of the change, in words (a component by its label, a segment as "device mobile",
-- a cell of two dimensions as "country × device DE × mobile").
select d.insight_key,
       cast(d.tenant_id as varchar) as tenant,
       coalesce(t.tenant_name, d.tenant_id) as tenant_name,
       case d.metric
           when 'revenue' then 'Revenue' when 'orders' then 'Orders' when 'active_users' then 'Active users'
           when 'sessions' then 'Sessions' when 'errors' then 'Errors' else d.metric
       end as metric,
       d.insight_date as day,
       case d.driver_kind when 'segment' then 'Segment' else 'Component' end as driver_kind,
       case when d.driver_kind = 'segment' then d.dimension_label || ' ' || d.segment else d.dimension_label end
           as driver,
       d.actual_value, d.expected_value, d.share_of_change, d.usual_share, d.noise_ratio, d.is_new, d.driver_rank
from marts.fct_insight_drivers as d
left join marts.dim_tenants as t on d.tenant_id = t.tenant_id
