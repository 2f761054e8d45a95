{#- Each user's first exposure to each declared experiment: the first experiment_assigned event of the
    experiment's own tenant (within its declared dates when it has them), with the variant it logged.

    Users the analysis must leave out stay here, counted, with the reason: seen in more than one
    variant, in a variant the registry does not declare, or assigned only outside the declared dates.
    Outcomes count from exposure until the conversion window closes or the experiment stops, whichever
    comes first (`window_end_at`); an experiment without a declared stop stops on its last assignment day. -#}
with experiments as (
    select * from {{ ref('dim_experiments') }}
),

variants as (
    select * from {{ ref('dim_experiment_variants') }}
),

events as (
    select * from {{ ref('fct_events') }}
),

assignments as (
    select
        events.experiment_id,
        events.tenant_id,
        events.user_id,
        events.experiment_variant as variant,
        events.event_at,
        events.event_id,
        (experiments.start_date is null or events.event_at >= cast(experiments.start_date as timestamp))
        and (experiments.stop_date is null
             or events.event_at < {{ dbt.dateadd('day', 1, 'cast(experiments.stop_date as timestamp)') }})
            as is_in_dates
    from events
    inner join experiments
        on experiments.experiment_id = events.experiment_id
        and experiments.tenant_id = events.tenant_id
    where events.event_type = 'experiment_assigned'
        and events.user_id is not null
),

per_user as (
    select
        experiment_id,
        user_id,
        count(*) as assignment_events,
        count(distinct variant) as variants_seen
    from assignments
    group by experiment_id, user_id
),

ranked as (
    select
        assignments.*,
        row_number() over (
            partition by experiment_id, user_id
            order by case when is_in_dates then 0 else 1 end, event_at, event_id
        ) as assignment_rank
    from assignments
),

stops as (
    select
        experiments.experiment_id,
        coalesce(experiments.stop_date, max(case when assignments.is_in_dates then cast(assignments.event_at as date) end))
            as stop_date
    from experiments
    inner join assignments on assignments.experiment_id = experiments.experiment_id
    group by experiments.experiment_id, experiments.stop_date
),

conversions as (
    select
        experiment_id,
        user_id,
        min(event_at) as first_converted_at
    from events
    where event_type = 'experiment_converted'
        and user_id is not null
    group by experiment_id, user_id
),

window_ends as (
    select
        ranked.experiment_id,
        ranked.user_id,
        {{ dbt.dateadd('day', 'experiments.conversion_window_days', 'ranked.event_at') }} as window_closes_at,
        {{ dbt.dateadd('day', 1, 'cast(stops.stop_date as timestamp)') }} as experiment_ends_at
    from ranked
    inner join experiments on experiments.experiment_id = ranked.experiment_id
    inner join stops on stops.experiment_id = ranked.experiment_id
    where ranked.assignment_rank = 1
)

select
    {{ dbt.concat(["ranked.experiment_id", "'|'", "ranked.user_id"]) }} as experiment_user_key,
    ranked.experiment_id,
    ranked.tenant_id,
    ranked.user_id,
    ranked.variant,
    ranked.event_at as exposed_at,
    cast(ranked.event_at as date) as exposure_date,
    case
        when window_ends.experiment_ends_at is null then window_ends.window_closes_at
        when window_ends.window_closes_at < window_ends.experiment_ends_at then window_ends.window_closes_at
        else window_ends.experiment_ends_at
    end as window_end_at,
    cast(per_user.assignment_events as bigint) as assignment_events,
    cast(per_user.variants_seen as bigint) as variants_seen,
    case
        when per_user.variants_seen > 1 then 'multiple_variants'
        when variants.variant is null then 'undeclared_variant'
        when not ranked.is_in_dates then 'outside_dates'
    end as exclusion_reason,
    coalesce(conversions.first_converted_at < ranked.event_at, false) as converted_before_exposure
from ranked
inner join per_user
    on per_user.experiment_id = ranked.experiment_id
    and per_user.user_id = ranked.user_id
inner join window_ends
    on window_ends.experiment_id = ranked.experiment_id
    and window_ends.user_id = ranked.user_id
left join variants
    on variants.experiment_id = ranked.experiment_id
    and variants.variant = ranked.variant
left join conversions
    on conversions.experiment_id = ranked.experiment_id
    and conversions.user_id = ranked.user_id
where ranked.assignment_rank = 1
