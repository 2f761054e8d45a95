with source as (
    select * from {{ source('raw_events', 'events_quarantine') }}
)

select
    source_file,
    line_number,
    {{ dbt.concat(['source_file', "':'", "cast(line_number as " ~ dbt.type_string() ~ ")"]) }} as quarantine_id,
    field as faulty_field,
    reason,
    raw_line,
    {{ to_utc('quarantined_at') }} as quarantined_at
from source
