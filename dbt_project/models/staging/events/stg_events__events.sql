{#- One row per event_id: the loader already deduplicates, this guards against any replay that
    reaches the raw table another way (the first copy loaded wins). Events a quality gate holds
    back are left out; once released, `loaded_at` is the release time, so that incremental
    models downstream take them in then.
    A copy is first when no copy of its event was loaded before it: written as a join on the
    event's key (not a window over every event), a filter on `loaded_at` (fct_events' increment)
    reaches the raw scan, and a micro-batch reads the new rows in full and only the keys of the rest. -#}
with source as (
    {{ rows_not_held(source('events', 'events'), 'event_id', 'raw_events.events') }}
),

ranked as (
    select *
    from source
    where not exists (
        select 1
        from {{ source('events', 'events') }} as earlier
        where
            earlier.event_id = source.event_id
            and (earlier._loaded_at, earlier._source_file, earlier._line_number)
            < (source._loaded_at, source._source_file, source._line_number)
    )
),

renamed as (
    select
        event_id,
        event_type,
        {{ to_utc(adapter.quote('timestamp')) }} as event_at,
        cast({{ to_utc(adapter.quote('timestamp')) }} as date) as event_date,
        tenant_id,
        user_id,
        anonymous_id,
        coalesce(user_id, anonymous_id) as visitor_id,
        session_id as client_session_id,
        {{ json_text('properties', 'order_id') }} as order_id,
        cast({{ json_text('properties', 'revenue') }} as numeric(18, 2)) as revenue,
        {{ json_text('properties', 'product_id') }} as product_id,
        {{ json_text('properties', 'feature') }} as feature,
        {{ json_text('properties', 'path') }} as page_path,
        {{ json_text('properties', 'code') }} as error_code,
        {{ json_text('properties', 'experiment_id') }} as experiment_id,
        {{ json_text('properties', 'variant') }} as experiment_variant,
        {{ json_text('context', 'device') }} as device,
        {{ json_text('context', 'country') }} as country,
        properties,
        _source_file as source_file,
        {{ to_utc('coalesce(_released_at, _loaded_at)') }} as loaded_at
    from ranked
)

select * from renamed
