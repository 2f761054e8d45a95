{#- MRR of each subscription on each day, rebuilt from its change history.
    The last change of a day wins; a change is effective from its day until the next change;
    a cancellation sets MRR to zero, and zero days are left out. Days run until the end of the
    activity window. -#}
with changes as (
    select
        subscription_id,
        effective_date,
        mrr,
        row_number() over (
            partition by subscription_id, effective_date order by effective_at desc, subscription_event_id desc
        ) as rank_in_day
    from {{ ref('stg_app__subscription_events') }}
),

intervals as (
    select
        subscription_id,
        effective_date as valid_from,
        lead(effective_date) over (partition by subscription_id order by effective_date) as valid_to,
        mrr
    from changes
    where rank_in_day = 1
),

window_bounds as (
    select * from {{ ref('int_calendar__activity_window') }}
),

days as (
    select spine.date_day
    from {{ ref('time_spine_daily') }} as spine
    cross join window_bounds
    where spine.date_day between window_bounds.first_date and window_bounds.last_date
)

select
    days.date_day,
    intervals.subscription_id,
    subscriptions.tenant_id,
    intervals.mrr
from intervals
inner join days
    on
        intervals.valid_from <= days.date_day
        and (intervals.valid_to is null or intervals.valid_to > days.date_day)
inner join {{ ref('stg_app__subscriptions') }} as subscriptions
    on intervals.subscription_id = subscriptions.subscription_id
where intervals.mrr > 0
