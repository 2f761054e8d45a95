{#- Sessions reaching each step of the purchase funnel, per day and tenant. A session reaches a
    step only if it also reached every step before it. -#}
with sessions as (
    select * from {{ ref('fct_sessions') }}
),

steps as (
    select
        session_date,
        tenant_id,
        count(*) as step_1,
        sum(case when page_views > 0 then 1 else 0 end) as step_2,
        sum(case when page_views > 0 and has_add_to_cart then 1 else 0 end) as step_3,
        sum(case when page_views > 0 and has_add_to_cart and has_checkout_started then 1 else 0 end) as step_4,
        sum(case when page_views > 0 and has_add_to_cart and has_checkout_started and is_converted then 1 else 0 end)
            as step_5
    from sessions
    group by session_date, tenant_id
),

{%- set funnel_steps = ['session_start', 'page_view', 'add_to_cart', 'checkout_started', 'checkout_completed'] %}

unpivoted as (
    {%- for step_name in funnel_steps %}
    select
        session_date,
        tenant_id,
        {{ loop.index }} as step_number,
        '{{ step_name }}' as step_name,
        step_{{ loop.index }} as sessions,
        step_1 as first_step
    from steps
    {{ 'union all' if not loop.last }}
    {%- endfor %}
)

select
    {{ dbt.concat(["cast(session_date as " ~ dbt.type_string() ~ ")", "'|'", 'tenant_id', "'|'",
                   "cast(step_number as " ~ dbt.type_string() ~ ")"]) }} as funnel_key,
    session_date as date_day,
    tenant_id,
    cast(step_number as integer) as step_number,
    step_name,
    cast(sessions as bigint) as sessions,
    cast(sessions as {{ sql_type('double precision') }}) / nullif(first_step, 0) as share_of_first_step,
    cast(sessions as {{ sql_type('double precision') }}) / nullif(
        lag(sessions) over (partition by session_date, tenant_id order by step_number), 0
    ) as share_of_previous_step
from unpivoted
