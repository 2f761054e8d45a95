{#- The tenants' insights, read-first order, in words (the all-tenants series stay in ml.insights: a
    tenant's token must not read them). Until the insights asset has run once ml.insights does not
    exist and this mart is empty rather than failing the build. -#}
{%- set insights = source('ml_insights', 'insights') -%}
{%- set written = adapter.get_relation(insights.database, insights.schema, insights.identifier) if execute else none -%}

with insights as (
    {%- if written is not none %}
    select * from {{ insights }}
    where cast(tenant_id as varchar) <> 'all'
    {%- else %}
    select
        cast(null as varchar) as insight_key,
        cast(null as varchar) as insight_type,
        cast(null as varchar) as metric,
        cast(null as varchar) as tenant_id,
        cast(null as date) as date_day,
        cast(null as varchar) as severity,
        0.0 as confidence,
        0.0 as value,
        0.0 as expected,
        0.0 as impact,
        0.0 as priority,
        0 as priority_rank,
        0.0 as score,
        cast(null as varchar) as method,
        cast(null as varchar) as explanation,
        cast(null as varchar) as drivers,
        cast(null as varchar) as recommendation
    where 1 = 0
    {%- endif %}
)

select
    cast(insight_key as varchar) as insight_key,
    cast(insight_type as varchar) as insight_type,
    cast(case cast(insight_type as varchar)
        when 'anomaly_spike' then 'Unusual rise'
        when 'anomaly_drop' then 'Unusual drop'
        when 'expected_event' then 'Calendar event'
        when 'trend_up' then 'Rising trend'
        when 'trend_down' then 'Falling trend'
        when 'change_point' then 'Lasting shift'
        else cast(insight_type as varchar)
    end as varchar) as insight_kind,
    cast(metric as varchar) as metric,
    cast(case cast(metric as varchar)
        when 'revenue' then 'Revenue'
        when 'orders' then 'Orders'
        when 'active_users' then 'Active users'
        when 'sessions' then 'Sessions'
        when 'errors' then 'Errors'
        else cast(metric as varchar)
    end as varchar) as metric_label,
    cast(tenant_id as varchar) as tenant_id,
    cast(date_day as date) as insight_date,
    cast(severity as varchar) as severity,
    cast(confidence as double precision) as confidence,
    cast(value as double precision) as actual_value,
    cast(expected as double precision) as expected_value,
    cast(impact as double precision) as impact,
    cast(priority as double precision) as priority,
    cast(priority_rank as bigint) as priority_rank,
    cast(score as double precision) as score,
    cast(method as varchar) as method,
    cast(explanation as varchar) as explanation,
    cast(drivers as varchar) as drivers,
    cast(recommendation as varchar) as recommendation
from insights
