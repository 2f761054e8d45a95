-- Each experiment's variants and metrics on its last day (marts.fct_experiment_results).
-- Evidence cannot build pages on a source with no rows (evidence-dev/evidence#2466): until there is a
-- row, one placeholder whose experiment_id is null, which no page shows.
with results as (
    select
        experiment_id, analysis_date, variant, is_control, metric, metric_label, metric_role, users, mean,
        relative_lift, relative_lower, relative_upper, p_value, adjusted_p_value,
        cuped_relative_lift, variance_reduction, sequential_lower, sequential_upper, chance_to_win,
        case metric_role when 'primary' then 0 else 1 end as role_order
    from marts.fct_experiment_results
)

select * from results
union all
select results.* replace (null as experiment_id)
from (select 1) as one
left join results on false
where not exists (select 1 from results)
