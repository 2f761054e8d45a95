{#- Each experiment's results as they stood on every day it ran: the lift and intervals to draw over time. -#}
with results as (
    {{ experiment_analysis_rows('results') }}
)

select
    {{ dbt.concat(["experiment_id", "'|'", "variant", "'|'", "metric", "'|'",
                   dbt.safe_cast("analysis_date", dbt.type_string())]) }} as result_day_key,
    results.*
from results
