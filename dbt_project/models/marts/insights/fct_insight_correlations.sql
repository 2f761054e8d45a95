{#- Lead/lag relationships between governed metrics per tenant that survived a correction for multiple
    comparisons and held out of sample (ml/correlations.py). Empty until the insights asset runs. -#}
{%- set related = source('ml_insights', 'insight_correlations') -%}
{%- set written = adapter.get_relation(related.database, related.schema, related.identifier) if execute else none -%}

with related as (
    {%- if written is not none %}
    select * from {{ related }}
    {%- else %}
    select
        cast(null as {{ sql_type('varchar') }}) as tenant_id,
        cast(null as {{ sql_type('varchar') }}) as leader,
        cast(null as {{ sql_type('varchar') }}) as leader_label,
        cast(null as {{ sql_type('varchar') }}) as leader_segment,
        cast(null as {{ sql_type('varchar') }}) as follower,
        cast(null as {{ sql_type('varchar') }}) as follower_label,
        0 as lag_days,
        cast(null as {{ sql_type('varchar') }}) as direction,
        0.0 as fit_correlation,
        0.0 as fit_p_adjusted,
        0.0 as holdout_correlation,
        0.0 as holdout_p,
        0 as fit_days,
        0 as holdout_days,
        0 as tests,
        cast(null as {{ sql_type('varchar') }}) as explanation
    where 1 = 0
    {%- endif %}
)

select
    {{ dbt.concat(["tenant_id", "'|'", "leader", "'|'", "coalesce(leader_segment, '')", "'|'", "follower"]) }}
        as correlation_key,
    cast(tenant_id as {{ sql_type('varchar') }}) as tenant_id,
    cast(leader as {{ sql_type('varchar') }}) as leader_metric,
    cast(leader_label as {{ sql_type('varchar') }}) as leader_label,
    cast(leader_segment as {{ sql_type('varchar') }}) as leader_segment,
    cast(follower as {{ sql_type('varchar') }}) as follower_metric,
    cast(follower_label as {{ sql_type('varchar') }}) as follower_label,
    cast(lag_days as bigint) as lag_days,
    cast(direction as {{ sql_type('varchar') }}) as direction,
    cast(fit_correlation as {{ sql_type('double precision') }}) as fit_correlation,
    cast(fit_p_adjusted as {{ sql_type('double precision') }}) as fit_p_adjusted,
    cast(holdout_correlation as {{ sql_type('double precision') }}) as holdout_correlation,
    cast(holdout_p as {{ sql_type('double precision') }}) as holdout_p,
    cast(fit_days as bigint) as fit_days,
    cast(holdout_days as bigint) as holdout_days,
    cast(tests as bigint) as tests,
    cast(explanation as {{ sql_type('varchar') }}) as explanation
from related
