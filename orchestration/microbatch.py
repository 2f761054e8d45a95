"""Micro-batches: a sensor on closed landing files runs the job that loads them and refreshes the
real-time marts.

A run loads every closed file dlt has not loaded yet (its ledger commits with the rows), so the
sensor only decides *whether* there is work, never which files a run takes. That is what keeps
runs from piling up: while any run that writes the warehouse is in flight the sensor starts
nothing, and the files that arrive meanwhile are all taken by the next run.

The sensor runs the micro-batch itself, in the process that evaluates it (Dagster's code server,
which has the code location imported, and Great Expectations, MetricFlow and dlt too after its
first run), with `execute_in_process` on the daemon's instance: the run is Dagster's own
(recorded, in the job's run history, with its logs and checks). A run launched the usual way
would start a new process and import all of that again, seconds longer than the freshness a
micro-batch exists for (NOTES: 7-12 s for a trivial asset); faster launchers exist only on
Dagster's private APIs. Its dbt step runs dbt in that process too, reusing the manifest it
parsed (`orchestration/assets/dbt_in_process.py`), rather than a `dbt` process per run. A run
that fails leaves its files unloaded and the cursor where it was, so the next tick tries again,
up to `ATTEMPTS` times; then the sensor waits `BACKOFF_SECONDS` before trying again, so a
lasting fault does not spin. While files keep closing, one evaluation
runs micro-batches back to back (up to `DRAIN_SECONDS`), instead of leaving each new file to wait for
the daemon's next evaluation (at most every 5 s, whatever the sensor's interval).

New files that the loader's ledger already holds (a batch run, `make run`, loaded them: the sensor's
cursor never saw them) are passed over, so the first `make dev` after `make run` launches nothing.
"""

import json
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, replace

import dagster as dg

from orchestration.assets.dbt import dbt_models
from orchestration.assets.publish import PUBLISHED_KEY
from orchestration.environment import current_environment

EVENTS_KEY = dg.AssetKey(["raw_events", "events"])
# The staging view is rebuilt too: it links the marts to the raw table, so the gates below run first.
REALTIME_KEYS = (dg.AssetKey(["staging", "stg_events__events"]), dg.AssetKey(["marts", "fct_events"]),
                 dg.AssetKey(["marts", "metrics_per_minute"]))
# The quality gates that hold single bad events back before they are merged (a merged event stays).
# Volumes, mixes and freshness compare whole days: the batch judges those.
ROW_GATES = tuple(dg.AssetCheckKey(EVENTS_KEY, name) for name in
                  ("timestamps_not_in_future", "properties_match_schema", "checkout_order_ids_unique"))
# dbt's tests of the tables it merges into. The view's tests read every raw event and the marts'
# Great Expectations suite compares whole days: the batch runs those.
DBT_TESTS = tuple(key for key in dbt_models.check_keys if key.asset_key in REALTIME_KEYS[1:])
# Files renamed into the landing zone this much out of order (by change time) are still noticed.
REORDER_WINDOW_NS = 60 * 1_000_000_000
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
ATTEMPTS, BACKOFF_SECONDS = 3, 60
# After a run, files that closed while it ran are taken by the next run in the same evaluation, for
# up to this long: the daemon evaluates a sensor at most every 5 s, which a run of a few seconds
# would otherwise wait for. Other sensors are evaluated after it.
DRAIN_SECONDS = 20
SENSOR = "landing_files_sensor"
TRIGGER_TAG = "platform/trigger"  # on each micro-batch run: the sensor that ran it

microbatch_job = dg.define_asset_job(
    "events_microbatch_job",
    selection=dg.AssetSelection.assets(EVENTS_KEY, *REALTIME_KEYS, PUBLISHED_KEY).without_checks()
    | dg.AssetSelection.checks(*ROW_GATES, *DBT_TESTS),
    description="Load the closed landing files of events with dlt (deduplicated on event_id), merge them into "
    "fct_events and the per-minute real-time mart with their tests and gates, and publish what readers read.",
    config={"ops": {"dbt_models": {"config": {"unit_tests": False, "in_process": True}}}},
)


@dataclass(frozen=True)
class LandingFile:
    name: str
    changed_ns: int  # inode change time: set when the writer renames the closed file into place


def closed_files(directory: os.PathLike) -> list[LandingFile]:
    """The closed event files (`*.jsonl`, the loader's glob); writers rename them into place when done."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    return [LandingFile(e.name, e.stat().st_ctime_ns) for e in entries if e.name.endswith(".jsonl") and e.is_file()]


@dataclass(frozen=True)
class LandingCursor:
    """How far the sensor has seen: the newest change time, and the names seen just before it; and
    the failed attempts at the files past it, with when the last one ended.

    A writer renames files in the order it closes them, but two writers (or a slow rename) can
    land a file with an older change time than one already seen. Names within the reorder window
    below the watermark are kept, so such a file is still new; the cursor stays small.
    """

    watermark_ns: int = 0
    recent: frozenset[str] = frozenset()
    failures: int = 0
    failed_at: float = 0.0

    @classmethod
    def parse(cls, raw: str | None) -> "LandingCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(int(data["watermark_ns"]), frozenset(data["recent"]), int(data.get("failures", 0)),
                   float(data.get("failed_at", 0.0)))

    def serialize(self) -> str:
        return json.dumps({"watermark_ns": self.watermark_ns, "recent": sorted(self.recent),
                           "failures": self.failures, "failed_at": self.failed_at})

    def new_files(self, files: list[LandingFile]) -> list[LandingFile]:
        floor = self.watermark_ns - REORDER_WINDOW_NS
        return [f for f in files if f.changed_ns > self.watermark_ns
                or (f.changed_ns > floor and f.name not in self.recent)]

    def advanced(self, files: list[LandingFile]) -> "LandingCursor":
        """The cursor once every file of `files` (a full listing) has been handed to a run."""
        watermark = max([self.watermark_ns, *(f.changed_ns for f in files)])
        floor = watermark - REORDER_WINDOW_NS
        return LandingCursor(watermark, frozenset(f.name for f in files if f.changed_ns > floor))


def loaded_files(env) -> frozenset[str]:
    """The landing files of events the loader's ledger holds (dlt's state, committed with the rows);
    none while a load is pending, so that the run which finishes it is not passed over."""
    from ingestion import archive, pipelines
    from ingestion.sources.landing import ledger

    pipeline = pipelines.make_pipeline(pipelines.EVENTS, env.warehouse_destination(), env.layout.dlt_dir)
    if pipeline.has_pending_data:
        return frozenset()
    return frozenset(ledger(pipeline, archive.EVENTS.pipeline, archive.EVENTS.resource))


def runs_in_flight(instance: dg.DagsterInstance, job_name: str | None = None) -> list[str]:
    """Runs queued or running, of any job (they may hold the warehouse, which one process writes at
    a time), or of the one job named."""
    runs = instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=5)
    return [record.dagster_run.run_id for record in runs]


def decide(cursor: LandingCursor, files: list[LandingFile], in_flight: list[str], now: float | None = None,
           loaded: Collection[str] = ()) -> tuple[dg.RunRequest | dg.SkipReason, LandingCursor]:
    """What the sensor does with a listing: run a micro-batch (the request's tags name what it takes)
    and advance the cursor once it succeeded, or skip and keep the cursor.

    While a run is in flight, or after `ATTEMPTS` failures until `BACKOFF_SECONDS` have passed, the
    cursor stays put, so the files that arrived meanwhile are still new next time and one run takes them all.
    Files named in `loaded` (the loader's ledger) are not new: when only they are, the cursor moves past them.
    """
    unseen = cursor.new_files(files)
    new = [f for f in unseen if f.name not in loaded]
    if not new:
        if unseen:
            return (dg.SkipReason(f"{len(unseen)} landing files the sensor had not seen were loaded by an earlier run"),
                    cursor.advanced(files))
        return dg.SkipReason("no new closed landing files"), cursor
    if in_flight:
        return dg.SkipReason(f"{len(new)} new files wait: run {in_flight[0]} is in flight"), cursor
    now = time.time() if now is None else now
    if cursor.failures >= ATTEMPTS and now - cursor.failed_at < BACKOFF_SECONDS:
        return dg.SkipReason(f"{len(new)} new files wait: the last {cursor.failures} micro-batches failed; "
                             f"trying again {BACKOFF_SECONDS} s after the last"), cursor
    after = cursor.advanced(files)
    request = dg.RunRequest(run_key=f"landing-{after.watermark_ns}",
                            tags={"landing/new_files": str(len(new)), "landing/first_file": min(f.name for f in new)})
    return request, after


@dg.sensor(name=SENSOR, job=microbatch_job, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Runs micro-batches (in the code server, where the code is imported) when closed "
           "event files land in data/landing/events; while a run is in flight, new files wait and the next "
           "run takes them all; files that closed during a run are taken by a run right after it.")
def landing_files_sensor(context: dg.SensorEvaluationContext):
    cursor = LandingCursor.parse(context.cursor)
    env = current_environment()
    job = context.repository_def.get_job(microbatch_job.name)
    deadline, done = time.monotonic() + DRAIN_SECONDS, []
    while True:
        files = closed_files(env.layout.events_dir)
        unseen = cursor.new_files(files)
        in_flight = runs_in_flight(context.instance) if unseen else []
        decision, after = decide(cursor, files, in_flight, loaded=loaded_files(env) if unseen else ())
        if isinstance(decision, dg.SkipReason):
            if after != cursor:
                context.update_cursor(after.serialize())
            return dg.SkipReason("; ".join(done)) if done else decision
        result = job.execute_in_process(instance=context.instance, raise_on_error=False,
                                        tags={**decision.tags, TRIGGER_TAG: SENSOR})
        if not result.success:
            context.update_cursor(replace(cursor, failures=cursor.failures + 1, failed_at=time.time()).serialize())
            return dg.SkipReason("; ".join([*done, f"micro-batch run {result.run_id} failed (attempt "
                                            f"{cursor.failures + 1}); its files stay unloaded for the next attempt"]))
        context.update_cursor(after.serialize())
        cursor = after
        done.append(f"micro-batch run {result.run_id} took {decision.tags['landing/new_files']} new files")
        if time.monotonic() > deadline:
            return dg.SkipReason("; ".join(done))
