-- Metrics that tend to move some days after another, per tenant (marts.fct_insight_correlations): kept only when
-- they survived a correction for multiple comparisons and held on later, held-out days; never read as cause.
select cast(c.tenant_id as varchar) as tenant, coalesce(t.tenant_name, c.tenant_id) as tenant_name,
       c.leader_label || case when c.leader_segment <> '' then ' (' || c.leader_segment || ')' else '' end as leader,
       c.follower_label as follower, c.lag_days, c.direction, c.explanation,
       c.fit_correlation, c.fit_p_adjusted, c.holdout_correlation, c.holdout_p, c.tests
from marts.fct_insight_correlations as c
left join marts.dim_tenants as t on c.tenant_id = t.tenant_id
