{#- Every tenant on every day of the activity window: the grid daily marts fill, so that series have no holes. -#}
with window_bounds as (
    select * from {{ ref('int_calendar__activity_window') }}
)

select
    {{ dbt.concat(["cast(spine.date_day as " ~ dbt.type_string() ~ ")", "'|'", 'tenants.tenant_id']) }}
        as tenant_day_key,
    spine.date_day,
    tenants.tenant_id
from {{ ref('time_spine_daily') }} as spine
cross join window_bounds
cross join {{ ref('stg_app__tenants') }} as tenants
where spine.date_day between window_bounds.first_date and window_bounds.last_date
