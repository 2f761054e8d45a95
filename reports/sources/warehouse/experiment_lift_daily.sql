-- Each treatment's lift on every day its experiment ran, with the fixed-horizon and the always-valid
-- intervals (marts.fct_experiment_results_daily).
-- Evidence cannot build pages on a source with no rows (evidence-dev/evidence#2466): until there is a
-- row, one placeholder whose experiment_id is null, which no page shows.
with lift as (
    select
        experiment_id, analysis_date as day, variant, metric, metric_label, metric_role, users,
        relative_lift, relative_lower, relative_upper, sequential_lower, sequential_upper
    from marts.fct_experiment_results_daily
    where not is_control
)

select * from lift
union all
select lift.* replace (null as experiment_id)
from (select 1) as one
left join lift on false
where not exists (select 1 from lift)
