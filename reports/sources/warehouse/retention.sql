-- Weekly signup cohorts and the share still active N weeks later (marts.retention_cohorts).
select cohort_week, tenant_id as tenant, week_number, cast(cohort_size as bigint) as cohort_size,
       cast(active_users as bigint) as active_users, retention_rate
from marts.retention_cohorts
union all
select cohort_week, 'all', week_number, cast(sum(cohort_size) as bigint), cast(sum(active_users) as bigint),
       sum(active_users) / nullif(sum(cohort_size), 0)
from marts.retention_cohorts
group by cohort_week, week_number
