"""Loading landing-zone events: bad lines quarantined with reasons, nothing loaded twice."""

from __future__ import annotations

import json

from ingestion import pipelines
from ingestion.paths import DataLayout, write_atomically
from tests.ingestion.helpers import event_line, load, query, scalar


def test_sample_events_load_with_faults_quarantined(sample):
    truth = json.loads(sample.ground_truth.read_text())["events"]
    load(sample, pipelines.EVENTS)
    assert scalar(sample, "select count(*) from raw_events.events") == truth["valid_events"]
    assert scalar(sample, "select count(distinct event_id) from raw_events.events") == truth["valid_events"]
    by_field = dict(query(sample, "select field, count(*) from raw_events.events_quarantine group by 1"))
    malformed = truth["malformed_lines"]
    assert by_field == {
        "line": malformed["not_json"], "tenant_id": malformed["missing_field"],
        "event_type": malformed["unknown_event_type"], "timestamp": malformed["wrong_type"],
        "event_id": truth["duplicate_lines"],
    }


def test_rerun_loads_nothing_and_changes_nothing(sample):
    load(sample, pipelines.EVENTS)
    before = query(sample, "select count(*), max(_loaded_at) from raw_events.events")
    quarantined = scalar(sample, "select count(*) from raw_events.events_quarantine")
    assert load(sample, pipelines.EVENTS) == {}
    assert query(sample, "select count(*), max(_loaded_at) from raw_events.events") == before
    assert scalar(sample, "select count(*) from raw_events.events_quarantine") == quarantined


def test_bad_lines_in_a_new_file(sample):
    """Each named bad input is quarantined with its field and reason; the good rows load; old rows stay."""
    load(sample, pipelines.EVENTS)
    already = scalar(sample, "select count(*) from raw_events.events")
    loaded_id = scalar(sample, "select min(event_id) from raw_events.events")
    lines = [
        event_line("new-1"),
        b'{"event_id": "broken", "event_type": ',                          # not JSON
        event_line("new-2", tenant_id=None),                               # missing required field
        event_line("new-3", event_type="page_veiw"),                       # unknown event type
        event_line("new-4", timestamp=1767225600),                         # wrong type
        event_line("new-5", properties={"path": 42}),                      # wrong property type
        event_line("new-1"),                                               # duplicate within the file
        event_line(loaded_id),                                             # duplicate of a loaded event
        event_line("new-6", user_id=None, anonymous_id="anon-1"),
    ]
    write_atomically(sample.events_dir / "events_zz-new.jsonl", b"\n".join(lines) + b"\n")
    load(sample, pipelines.EVENTS)

    new_ids = {r[0] for r in query(
        sample, "select event_id from raw_events.events where _source_file = 'events_zz-new.jsonl'")}
    assert new_ids == {"new-1", "new-6"}
    # the replayed id kept its original row: nothing already loaded is lost or overwritten
    assert scalar(sample, "select count(*) from raw_events.events") == already + 2
    first_copy = scalar(sample, "select _source_file from raw_events.events where event_id = ?", loaded_id)
    assert first_copy != "events_zz-new.jsonl"
    refused = query(sample, "select line_number, field, reason from raw_events.events_quarantine "
                            "where source_file = 'events_zz-new.jsonl' order by line_number")
    assert [(n, f) for n, f, _ in refused] == [
        (2, "line"), (3, "tenant_id"), (4, "event_type"), (5, "timestamp"), (6, "properties.path"), (7, "event_id"),
    ]
    reasons = {n: r for n, _, r in refused}
    assert "not valid JSON" in reasons[2]
    assert "unknown event type 'page_veiw'" in reasons[4]
    assert "duplicate of the event at events_zz-new.jsonl:1" in reasons[7]


def test_a_loaded_file_is_never_loaded_again(sample):
    load(sample, pipelines.EVENTS)
    first = sorted(sample.events_dir.glob("*.jsonl"))[0]
    count = scalar(sample, "select count(*) from raw_events.events")
    # the same name rewritten (or touched) is not read again
    write_atomically(first, event_line("sneaky") + b"\n")
    assert load(sample, pipelines.EVENTS) == {}
    assert scalar(sample, "select count(*) from raw_events.events where event_id = 'sneaky'") == 0
    assert scalar(sample, "select count(*) from raw_events.events") == count


def test_files_still_being_written_are_not_picked_up(sample):
    (sample.events_dir / "events_open.jsonl.tmp").write_bytes(event_line("in-flight") + b"\n")
    load(sample, pipelines.EVENTS)
    assert scalar(sample, "select count(*) from raw_events.events where event_id = 'in-flight'") == 0


def test_run_interrupted_before_load_completes_on_rerun(sample):
    """A run that stops after extracting (a crash before loading) leaves a pending package;
    the next run loads it first and then finds no new file: every event exactly once."""
    truth = json.loads(sample.ground_truth.read_text())["events"]
    pipeline = pipelines.make_pipeline(pipelines.EVENTS, pipelines.duckdb_warehouse(sample.warehouse), sample.dlt_dir)
    pipeline.extract(pipelines.source_for(pipelines.EVENTS, sample))
    pipeline.normalize()
    assert pipeline.list_normalized_load_packages()
    load(sample, pipelines.EVENTS)
    assert scalar(sample, "select count(*) from raw_events.events") == truth["valid_events"]
    assert scalar(sample, "select count(distinct event_id) from raw_events.events") == truth["valid_events"]
    assert load(sample, pipelines.EVENTS) == {}


def test_run_that_dies_before_commit_loses_nothing(sample):
    """Files extracted by a run whose package is then lost are not marked loaded: the file
    ledger is rolled back with the package, and the rerun loads every file once."""
    truth = json.loads(sample.ground_truth.read_text())["events"]
    pipeline = pipelines.make_pipeline(pipelines.EVENTS, pipelines.duckdb_warehouse(sample.warehouse), sample.dlt_dir)
    pipeline.extract(pipelines.source_for(pipelines.EVENTS, sample))
    ledger = pipeline.state["sources"]["events"]["resources"]["events"]["loaded_files"]
    assert len(ledger) == truth["files"]
    pipeline.abort_packages()  # the crash took the half-made package with it
    load(sample, pipelines.EVENTS)
    assert scalar(sample, "select count(distinct event_id) from raw_events.events") == truth["valid_events"]
    assert scalar(sample, "select count(*) from raw_events.events") == truth["valid_events"]


def test_a_load_of_many_files_is_one_page_and_finds_duplicates_across_all(tmp_path):
    """The load's de-duplication index lives in one call of the transformer (so that it goes with the load,
    docs/scaling.md): every file of the load must come in that call, more than dlt's 100 files per page too.
    Each file repeats the previous file's event, so wherever pages were cut, a duplicate would be missed."""
    layout = DataLayout(tmp_path)
    layout.ensure()
    for n in range(150):
        lines = [event_line(f"e-{n}"), *([event_line(f"e-{n - 1}")] if n else [])]
        write_atomically(layout.events_dir / f"events_{n:03d}.jsonl", b"\n".join(lines) + b"\n")
    load(layout, pipelines.EVENTS)
    assert scalar(layout, "select count(*) from raw_events.events") == 150
    assert query(layout, "select count(*), count(distinct reason) from raw_events.events_quarantine "
                         "where field = 'event_id' and reason like 'duplicate of the event at %'") == [(149, 149)]
