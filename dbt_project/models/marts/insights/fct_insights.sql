{#- The tenants' insights, read-first order, in words (the all-tenants series stay in ml.insights: a
    tenant's token must not read them). Until the insights asset has run once ml.insights does not
    exist and this mart is empty rather than failing the build. -#}
{%- set insights = source('ml_insights', 'insights') -%}
{%- set written = adapter.get_relation(insights.database, insights.schema, insights.identifier) if execute else none -%}

with insights as (
    {%- if written is not none %}
    select * from {{ insights }}
    where cast(tenant_id as {{ sql_type('varchar') }}) <> 'all'
    {%- else %}
    select
        cast(null as {{ sql_type('varchar') }}) as insight_key,
        cast(null as {{ sql_type('varchar') }}) as insight_type,
        cast(null as {{ sql_type('varchar') }}) as metric,
        cast(null as {{ sql_type('varchar') }}) as tenant_id,
        cast(null as date) as date_day,
        cast(null as {{ sql_type('varchar') }}) as severity,
        0.0 as confidence,
        0.0 as value,
        0.0 as expected,
        0.0 as impact,
        0.0 as priority,
        0 as priority_rank,
        0.0 as score,
        cast(null as {{ sql_type('varchar') }}) as method,
        cast(null as {{ sql_type('varchar') }}) as explanation,
        cast(null as {{ sql_type('varchar') }}) as drivers,
        cast(null as {{ sql_type('varchar') }}) as recommendation,
        cast(null as {{ sql_type('varchar') }}) as verdict
    where 1 = 0
    {%- endif %}
)

select
    cast(insight_key as {{ sql_type('varchar') }}) as insight_key,
    cast(insight_type as {{ sql_type('varchar') }}) as insight_type,
    cast(case cast(insight_type as {{ sql_type('varchar') }})
        when 'anomaly_spike' then 'Unusual rise'
        when 'anomaly_drop' then 'Unusual drop'
        when 'expected_event' then 'Calendar event'
        when 'withdrawn_anomaly' then 'Withdrawn anomaly'
        when 'trend_up' then 'Rising trend'
        when 'trend_down' then 'Falling trend'
        when 'change_point' then 'Lasting shift'
        else cast(insight_type as {{ sql_type('varchar') }})
    end as {{ sql_type('varchar') }}) as insight_kind,
    cast(metric as {{ sql_type('varchar') }}) as metric,
    cast(case cast(metric as {{ sql_type('varchar') }})
        when 'revenue' then 'Revenue'
        when 'orders' then 'Orders'
        when 'active_users' then 'Active users'
        when 'sessions' then 'Sessions'
        when 'errors' then 'Errors'
        else cast(metric as {{ sql_type('varchar') }})
    end as {{ sql_type('varchar') }}) as metric_label,
    cast(tenant_id as {{ sql_type('varchar') }}) as tenant_id,
    cast(date_day as date) as insight_date,
    cast(severity as {{ sql_type('varchar') }}) as severity,
    cast(confidence as {{ sql_type('double precision') }}) as confidence,
    cast(value as {{ sql_type('double precision') }}) as actual_value,
    cast(expected as {{ sql_type('double precision') }}) as expected_value,
    cast(impact as {{ sql_type('double precision') }}) as impact,
    cast(priority as {{ sql_type('double precision') }}) as priority,
    cast(priority_rank as bigint) as priority_rank,
    cast(score as {{ sql_type('double precision') }}) as score,
    cast(method as {{ sql_type('varchar') }}) as method,
    cast(explanation as {{ sql_type('varchar') }}) as explanation,
    cast(drivers as {{ sql_type('varchar') }}) as drivers,
    cast(recommendation as {{ sql_type('varchar') }}) as recommendation,
    cast(nullif(cast(verdict as {{ sql_type('varchar') }}), '') as {{ sql_type('varchar') }}) as verdict
from insights
