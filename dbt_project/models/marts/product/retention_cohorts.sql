{#- Weekly signup cohorts per tenant and the share of each cohort active N weeks later. -#}
with users as (
    select
        user_id,
        tenant_id,
        {{ dbt.date_trunc('week', 'signup_date') }} as cohort_week
    from {{ ref('dim_users') }}
    where signup_date >= (
        select window_bounds.first_date from {{ ref('int_calendar__activity_window') }} as window_bounds
    )
),

activity as (
    select distinct
        user_id,
        {{ dbt.date_trunc('week', 'event_date') }} as activity_week
    from {{ ref('fct_events') }}
    where user_id is not null
),

cohort_sizes as (
    select
        tenant_id,
        cohort_week,
        count(*) as cohort_size
    from users
    group by tenant_id, cohort_week
),

retained as (
    select
        users.tenant_id,
        users.cohort_week,
        -- both are week starts, so whole weeks are days / 7 (noqa: sqlfluff measures the macro's rendering)
        cast({{ dbt.datediff('users.cohort_week', 'activity.activity_week', 'day') }} / 7 as integer) as week_number,  -- noqa: LT05
        count(distinct users.user_id) as active_users
    from users
    inner join activity
        on users.user_id = activity.user_id and users.cohort_week <= activity.activity_week
    group by users.tenant_id, users.cohort_week, week_number
)

select
    {{ dbt.concat(['retained.tenant_id', "'|'", "cast(cast(retained.cohort_week as date) as " ~ dbt.type_string() ~ ")",
                   "'|'", "cast(retained.week_number as " ~ dbt.type_string() ~ ")"]) }} as cohort_key,
    retained.tenant_id,
    cast(retained.cohort_week as date) as cohort_week,
    retained.week_number,
    cast(cohort_sizes.cohort_size as bigint) as cohort_size,
    cast(retained.active_users as bigint) as active_users,
    cast(retained.active_users as {{ sql_type('double precision') }}) / cohort_sizes.cohort_size as retention_rate
from retained
inner join cohort_sizes
    on retained.tenant_id = cohort_sizes.tenant_id and retained.cohort_week = cohort_sizes.cohort_week
