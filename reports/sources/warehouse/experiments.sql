-- Each declared experiment: its registry entry (marts.dim_experiments) and its decision on its last day
-- (marts.fct_experiment_decisions), with the link to its page.
-- Evidence cannot build pages on a source with no rows (evidence-dev/evidence#2466): until there is a
-- row, one placeholder whose experiment_id is null, which no page shows.
with declared as (
    select
        e.experiment_id,
        e.tenant_id as tenant,
        e.experiment_name,
        e.hypothesis,
        e.minimum_detectable_effect,
        e.conversion_window_days,
        e.primary_metric,
        d.status,
        d.decision,
        coalesce(d.notes, 'None: every exposure is analysed.') as notes,
        d.analysis_date,
        coalesce(strftime(d.analysis_date, '%Y-%m-%d'), 'not analysed yet') as decided_on,
        d.first_exposure_date,
        d.users,
        coalesce(d.users_per_variant, 'none yet') as users_per_variant,
        d.users_needed_per_variant,
        d.srm_p_value,
        case
            when d.srm_p_value is null then 'not checked: no analysed users yet'
            when d.srm_detected then 'MISMATCH: users per variant are not the declared split (p = ' || printf('%.1g', d.srm_p_value) || ')'
            else 'OK: users per variant match the declared split (p = ' || printf('%.2f', d.srm_p_value) || ')'
        end as srm_status,
        case
            when d.status = 'ship' then 'success'
            when d.status in ('sample_ratio_mismatch', 'invalid_design', 'one_variant_exposed', 'keep_control') then 'danger'
            when d.status in ('no_data', 'no_outcomes') then 'warning'
            else 'info'
        end as alert,
        '/experiments/' || e.experiment_id as link
    from marts.dim_experiments as e
    left join marts.fct_experiment_decisions as d using (experiment_id)
)

select * from declared
union all
select declared.* replace (null as experiment_id)
from (select 1) as one
left join declared on false
where not exists (select 1 from declared)
