{#- Each experiment's results on its last day: one row per variant and metric (the control's rows
    carry its users and mean; each treatment's, its lift against the control). Read from the daily
    results, so that the analysis' table has one model over it. -#}
{%- set result_columns = [] %}
{%- for name, type in experiment_analysis_columns('results') %}
{%- do result_columns.append('daily.' ~ name) %}
{%- endfor %}

with daily as (
    select * from {{ ref('fct_experiment_results_daily') }}
),

latest as (
    select
        experiment_id,
        max(analysis_date) as analysis_date
    from daily
    group by experiment_id
)

select
    {{ dbt.concat(["daily.experiment_id", "'|'", "daily.variant", "'|'", "daily.metric"]) }} as result_key,
    {{ result_columns | join(',\n    ') }}
from daily
inner join latest
    on
        daily.experiment_id = latest.experiment_id
        and daily.analysis_date = latest.analysis_date
