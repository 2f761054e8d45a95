{#- Event facts, incremental for micro-batches: each run takes the events loaded since the last
    one and merges them on event_id, so a replay changes nothing. Late events carry their own
    event_date, so they land in the day they happened, not the day they arrived. This is where the
    events' history lives: raw events are kept for less (orchestration/retention.yml), so a full
    refresh never rebuilds it (full_refresh=false; drop the table by hand to start again). An event
    keeps its event_at for life (publish_row_time): publishing a micro-batch looks for the rows it
    replaces only from its earliest event on. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy=insert_only_strategy(),
        unique_key='event_id',
        on_schema_change='append_new_columns',
        full_refresh=false,
        meta={'publish_cursor': 'loaded_at', 'publish_row_time': 'event_at'},
    )
}}

select
    event_id,
    event_type,
    event_at,
    event_date,
    tenant_id,
    user_id,
    anonymous_id,
    visitor_id,
    client_session_id,
    order_id,
    revenue,
    product_id,
    feature,
    page_path,
    error_code,
    experiment_id,
    experiment_variant,
    device,
    country,
    loaded_at
from {{ ref('stg_events__events') }}
{% if is_incremental() %}
where {{ newer_than('loaded_at') }} and {{ key_is_new('event_id') }}
{% endif %}
