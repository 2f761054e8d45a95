-- Anomalies, trends and change points found in the metric series (ml.insights), with explanations.
select insight_type, metric, tenant_id as tenant, date_day as day, severity,
       case severity when 'high' then 1 when 'medium' then 2 else 3 end as severity_rank,
       confidence, value, expected, lower, upper, explanation
from ml.insights
