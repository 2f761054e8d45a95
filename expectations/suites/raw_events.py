"""Raw product events (`raw_events.events`): volumes, identity, timestamps and property schemas.

The loader has already refused events that break the envelope; this suite watches what a single
event cannot show (a tenant going quiet, a spike of anonymous traffic, a shifted event mix) and
re-checks per-row rules that would be costly to find later (dates in the future, properties that
no longer match their type's schema, orders reported twice).
"""

from __future__ import annotations

from expectations.spec import Check, Frame, Incremental, Quarantine, Severity, Suite
from ingestion.events.schema import EVENT_PROPERTIES, MAX_FUTURE_SKEW

ASSET = ("raw_events", "events")
SOURCE = "raw_events.events"
# The trailing window that a day's volume is compared with, and how many days it needs.
TRAILING_DAYS, MIN_TRAILING_DAYS = 14, 7
# Standard errors of a day's share that chance alone may move it (user_id_null_share_in_band).
NOISE_ALLOWANCE = 3
RETENTION_DAYS = 730
# DuckDB's json_type names for the Python types of the schema registry.
JSON_TYPES = {str: ("VARCHAR",), int: ("BIGINT", "UBIGINT"), float: ("DOUBLE",)}

REQUIRED_FIELDS = ("event_id", "event_type", "tenant_id", "session_id", "timestamp")


def _null_rates_sql() -> str:
    return ", ".join(f'avg(case when "{c}" is null then 1.0 else 0.0 end) as {c}_null_rate' for c in REQUIRED_FIELDS)


DAILY = f"""
with bounds as (
    select min(cast("timestamp" as date)) as first_day, max(cast("timestamp" as date)) as last_day
    from raw_events.events
    where "timestamp" <= timestamptz '{{now}}' + interval 1 hour
),
grid as (
    select tenants.tenant_id, cast(days.d as date) as date_day
    from (select distinct tenant_id from raw_events.events) as tenants, bounds,
         generate_series(bounds.first_day, bounds.last_day, interval 1 day) as days(d)
),
counts as (
    select tenant_id, cast("timestamp" as date) as date_day, count(*) as events,
           avg(case when user_id is null then 1.0 else 0.0 end) as null_user_share,
           {_null_rates_sql()}
    from raw_events.events
    group by 1, 2
),
daily as (
    select grid.tenant_id, grid.date_day, coalesce(counts.events, 0) as events, counts.null_user_share,
           {", ".join(f"counts.{c}_null_rate" for c in REQUIRED_FIELDS)}
    from grid left join counts using (tenant_id, date_day)
),
with_trailing as (
    select *, avg(events) over w as trailing_events, count(*) over w as trailing_days,
           avg(null_user_share) over w as trailing_null_user_share
    from daily
    window w as (partition by tenant_id order by date_day
                 rows between {TRAILING_DAYS} preceding and 1 preceding)
)
select tenant_id, date_day, events, round(trailing_events, 1) as trailing_events,
       {", ".join(f"{c}_null_rate" for c in REQUIRED_FIELDS)},
       -- a day still in progress (real-time events arrive all day) has no volume to judge yet
       case when trailing_days >= {MIN_TRAILING_DAYS} and date_day < cast(timestamptz '{{now}}' as date)
            then events / trailing_events end as volume_ratio,
       -- the rise beyond chance: a small tenant's quiet day (a holiday) moves its share by itself, so
       -- three standard errors of a share at the day's volume are allowed before the rise counts
       case when trailing_days >= {MIN_TRAILING_DAYS}
            then null_user_share - trailing_null_user_share
                 - {NOISE_ALLOWANCE} * sqrt(trailing_null_user_share * (1 - trailing_null_user_share) / events)
       end as null_user_share_excess
from with_trailing
order by tenant_id, date_day
"""

EVENT_MIX = f"""
with daily as (
    select cast("timestamp" as date) as date_day, event_type, count(*) as events
    from raw_events.events
    group by 1, 2
),
shares as (
    select date_day, event_type, events / sum(events) over (partition by date_day) as share
    from daily
)
select date_day, event_type, share,
       share - avg(share) over (partition by event_type order by date_day
                                rows between {TRAILING_DAYS} preceding and 1 preceding) as share_shift
from shares
order by date_day, event_type
"""


def _signature_sql() -> str:
    """`type(prop:JSONTYPE,...)` of each event's required properties; `missing` where absent."""
    cases = []
    for event_type, properties in EVENT_PROPERTIES.items():
        parts = " || ',' || ".join(
            f"'{name}:' || coalesce(json_type(properties, '$.{name}'), 'missing')" for name in properties)
        cases.append(f"when '{event_type}' then '{event_type}(' || {parts} || ')'")
    return "case event_type " + " ".join(cases) + " else event_type || '(unknown type)' end"


def allowed_signatures() -> list[str]:
    """Every signature the schema registry accepts (a property typed int or float has two or three)."""
    found = []
    for event_type, properties in EVENT_PROPERTIES.items():
        combos = [""]
        for name, types in properties.items():
            kinds = [k for t in types for k in JSON_TYPES[t]]
            combos = [f"{c},{name}:{k}" if c else f"{name}:{k}" for c in combos for k in kinds]
        found += [f"{event_type}({c})" for c in combos]
    return found


HOURS_AFTER_NOW = """date_diff('second', timestamptz '{now}', "timestamp") / 3600.0"""

# Per-row rules that stay passed once passed: only rows loaded since (see `Incremental`).
EVENTS = f"""
select event_id, _loaded_at, {HOURS_AFTER_NOW} as hours_after_now, {_signature_sql()} as property_signature
from raw_events.events
where {{rows}}
"""

# An event ages out of retention as the clock moves: every row, every time (the batch runs it).
EVENT_AGES = f"""
select event_id, {HOURS_AFTER_NOW} as hours_after_now
from raw_events.events
"""

# The first report of an order is kept, the later ones held: "first" by the event's time, then the
# load it came in, then its id, so that which copy is held depends on the data only.
CHECKOUTS = """
select event_id, json_extract_string(properties, '$.order_id') as order_id
from raw_events.events
where event_type = 'checkout_completed'
order by "timestamp", _loaded_at, event_id
"""

_by_event = Quarantine(SOURCE, "event_id")

SUITE = Suite(
    name="raw_events",
    description=__doc__.split("\n\n")[0],
    frames=(
        Frame("events_daily", DAILY, label=("tenant_id", "date_day")),
        Frame("event_mix", EVENT_MIX, label=("date_day", "event_type")),
        Frame("events", EVENTS, label=("event_id",), incremental=Incremental("_loaded_at")),
        Frame("event_ages", EVENT_AGES, label=("event_id",)),
        Frame("checkouts", CHECKOUTS, label=("event_id", "order_id")),
    ),
    checks=(
        Check("daily_volume_in_band", ASSET, "events_daily", "expect_column_values_to_be_between",
              {"column": "volume_ratio", "min_value": 0.3, "max_value": 3.0}, Severity.CRITICAL,
              f"Each tenant's events per day stay within 0.3x to 3x the mean of its trailing {TRAILING_DAYS} days "
              "(a day with no events counts as zero; the current day is judged once it is over)."),
        Check("user_id_null_share_in_band", ASSET, "events_daily", "expect_column_values_to_be_between",
              {"column": "null_user_share_excess", "max_value": 0.2}, Severity.CRITICAL,
              "The share of events without a user_id rises at most 20 points above the tenant's trailing mean, "
              f"beyond {NOISE_ALLOWANCE} standard errors of chance at the day's volume."),
        Check("event_type_mix_stable", ASSET, "event_mix", "expect_column_values_to_be_between",
              {"column": "share_shift", "min_value": -0.1, "max_value": 0.1}, Severity.WARNING,
              "Each event type's share of a day's events moves at most 10 points from its trailing mean."),
        *(Check(f"{column}_never_null", ASSET, "events_daily", "expect_column_values_to_be_between",
                {"column": f"{column}_null_rate", "max_value": 0}, Severity.CRITICAL,
                f"The null rate of the required field {column} is zero every day for every tenant.")
          for column in REQUIRED_FIELDS),
        Check("timestamps_not_in_future", ASSET, "events", "expect_column_values_to_be_between",
              {"column": "hours_after_now", "max_value": MAX_FUTURE_SKEW.total_seconds() / 3600}, Severity.CRITICAL,
              "No event is dated more than an hour after the validation time.", _by_event),
        Check("timestamps_within_retention", ASSET, "event_ages", "expect_column_values_to_be_between",
              {"column": "hours_after_now", "min_value": -RETENTION_DAYS * 24.0}, Severity.WARNING,
              f"No event is older than the {RETENTION_DAYS}-day retention window.", _by_event),
        Check("properties_match_schema", ASSET, "events", "expect_column_values_to_be_in_set",
              {"column": "property_signature", "value_set": allowed_signatures()}, Severity.CRITICAL,
              "Each event carries the properties its type requires, with their JSON types "
              "(ingestion/events/schema.py).", _by_event),
        Check("checkout_order_ids_unique", ASSET, "checkouts", "expect_column_values_to_be_unique",
              {"column": "order_id"}, Severity.CRITICAL,
              "An order is reported by one checkout_completed event; later copies (by timestamp, then load, then "
              "event id) are held back.",
              Quarantine(SOURCE, "event_id", keep_first=True)),
    ),
)
