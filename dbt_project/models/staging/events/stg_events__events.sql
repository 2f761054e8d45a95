{#- One row per event_id: the loader already deduplicates, this guards against any replay that
    reaches the raw table another way (the first copy loaded wins). Events a quality gate holds
    back are left out; once released, `loaded_at` is the release time, so that incremental
    models downstream take them in then. -#}
with source as (
    {{ rows_not_held(source('raw_events', 'events'), 'event_id', 'raw_events.events') }}
),

ranked as (
    select
        *,
        row_number() over (partition by event_id order by _loaded_at, _source_file, _line_number) as copy_number
    from source
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
    where copy_number = 1
)

select * from renamed
