{#- Each experiment's results on its last day: one row per variant and metric (the control's rows
    carry its users and mean; each treatment's, its lift against the control). -#}
with results as (
    {{ experiment_analysis_rows('results') }}
),

latest as (
    select experiment_id, max(analysis_date) as analysis_date
    from results
    group by experiment_id
)

select
    {{ dbt.concat(["results.experiment_id", "'|'", "results.variant", "'|'", "results.metric"]) }} as result_key,
    results.*
from results
inner join latest
    on latest.experiment_id = results.experiment_id
    and latest.analysis_date = results.analysis_date
