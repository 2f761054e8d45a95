-- Anomalies, trends and change points found in the metric series (ml.insights), with explanations, the sentence
-- naming their drivers, a recommendation, impact (in the metric's unit) and priority; labelled for a
-- reader: the kind of insight and the metric in words, the tenant by name (`tenant` stays the id the filter uses).
-- An anomaly's verdict: provisional on its day, confirmed (or withdrawn) two weeks later (ml/detection.py).
-- The casts: a run that found no insights writes the table without rows, its text columns untyped.
select cast(i.insight_type as varchar) as insight_type,
       case cast(i.insight_type as varchar)
           when 'anomaly_spike' then 'Unusual rise' when 'anomaly_drop' then 'Unusual drop'
           when 'expected_event' then 'Calendar event' when 'withdrawn_anomaly' then 'Withdrawn anomaly'
           when 'trend_up' then 'Rising trend'
           when 'trend_down' then 'Falling trend' when 'change_point' then 'Lasting shift'
           else cast(i.insight_type as varchar)
       end as kind,
       case cast(i.metric as varchar)
           when 'revenue' then 'Revenue' when 'orders' then 'Orders' when 'active_users' then 'Active users'
           when 'sessions' then 'Sessions' when 'errors' then 'Errors' else cast(i.metric as varchar)
       end as metric,
       cast(i.tenant_id as varchar) as tenant,
       case when cast(i.tenant_id as varchar) = 'all' then 'All tenants'
            else coalesce(t.tenant_name, cast(i.tenant_id as varchar)) end as tenant_name,
       i.date_day as day, i.severity,
       case cast(i.verdict as varchar) when 'provisional' then 'Provisional' when 'confirmed' then 'Confirmed'
       end as verdict,
       case i.severity when 'high' then 1 when 'medium' then 2 else 3 end as severity_rank,
       i.confidence, i.value, i.expected, i.lower, i.upper, i.explanation,
       cast(i.drivers as varchar) as drivers, cast(i.recommendation as varchar) as recommendation,
       cast(i.impact as double) as impact, cast(i.priority as double) as priority,
       cast(i.priority_rank as bigint) as priority_rank
from ml.insights as i
left join marts.dim_tenants as t on cast(i.tenant_id as varchar) = t.tenant_id
