"""Applies a suite to the warehouse with Great Expectations and keeps what it found.

For each frame the suite validates, the runner queries the warehouse, hands the frame to a
Great Expectations checkpoint (so results land in the validation store and Data Docs), then
turns each expectation's result into an `Outcome` a person can act on: what was observed, what
was expected, and which rows (by their labels) broke the rule. Row-level failures are held in
`quality.quarantined_rows`; rows held earlier and now passing are released. Frames marked
incremental read only the rows loaded since their checks last ran, and the rows those hold.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from expectations import data_docs, store
from expectations.spec import Check, Frame, Suite

EXAMPLES = 5  # failing rows named in a message


def data_docs_index(gx_root: Path) -> Path:
    """The Data Docs site that validations under `gx_root` build (open it in a browser)."""
    return gx_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


@dataclass
class Outcome:
    """One expectation's verdict in one validation, and what happened to its failing rows."""

    suite: str
    check: Check
    success: bool
    observed: str
    expected: str
    unexpected_count: int | None = None
    examples: list[str] = field(default_factory=list)
    newly_held: int = 0
    still_held: int = 0
    released: int = 0
    error: str | None = None

    @property
    def gate_passed(self) -> bool:
        """Passes the gate if the data met the rule, or every failing row was already held back.

        A row quarantined by an earlier run no longer reaches the models, so it does not block
        again; it stays held (and counted) until the row is fixed and released.
        """
        if self.error:
            return False
        return self.success or (self.check.quarantine is not None and self.newly_held == 0)

    @property
    def message(self) -> str:
        check = self.check
        head = f"{self.suite}.{check.name} ({check.severity}) on {'/'.join(check.asset)}"
        if self.error:
            return f"{head}: could not validate: {self.error}"
        verdict = "passed" if self.success else "FAILED"
        text = f"{head} {verdict}: observed {self.observed}; expected {self.expected}"
        if self.examples:
            text += "; e.g. " + "; ".join(self.examples)
        if check.quarantine is not None and (self.newly_held or self.still_held or self.released):
            text += (f" [quarantine {check.quarantine.source_table}: {self.newly_held} newly held,"
                     f" {self.still_held} still held, {self.released} released]")
        return text


def describe_expected(check: Check) -> str:
    kw = check.kwargs
    if "min_value" in kw or "max_value" in kw:
        low, high = kw.get("min_value"), kw.get("max_value")
        column = kw["column"]
        if low is not None and high is not None:
            return f"{low} <= {column} <= {high}"
        return f"{column} >= {low}" if low is not None else f"{column} <= {high}"
    if "value_set" in kw:
        values = kw["value_set"]
        shown = ", ".join(map(str, values[:6])) + (", ..." if len(values) > 6 else "")
        return f"{kw['column']} in {{{shown}}}"
    if "column_set" in kw:
        return "columns including " + ", ".join(kw["column_set"])
    if check.expectation == "expect_column_values_to_be_unique":
        return f"{kw['column']} unique"
    if check.expectation == "expect_column_values_to_not_be_null":
        return f"{kw['column']} never null"
    if check.expectation == "expect_column_pair_values_a_to_be_greater_than_b":
        return f"{kw['column_A']} {'>=' if kw.get('or_equal') else '>'} {kw['column_B']}"
    return f"{check.expectation}({kw})"


def _checked_columns(check: Check) -> list[str]:
    kw = check.kwargs
    return [kw[k] for k in ("column", "column_A", "column_B") if k in kw]


def _label(frame: Frame, row: pd.Series, columns: list[str]) -> str:
    parts = [f"{c}={row[c]}" for c in frame.label if c in row.index]
    parts += [f"{c}={_short(row[c])}" for c in columns if c not in frame.label and c in row.index]
    return " ".join(parts)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _observed(result: dict, count: int | None, failing: pd.DataFrame, check: Check,
              since: datetime | None = None) -> str:
    if "observed_value" in result and result["observed_value"] is not None:
        value = result["observed_value"]
        if check.expectation == "expect_table_columns_to_match_set":
            missing = sorted(set(check.kwargs["column_set"]) - set(value))
            return f"missing columns {missing}" if missing else "every required column present"
        return _short(value)
    total = result.get("element_count")
    rows = "rows" if since is None else f"rows (loaded after {since:%Y-%m-%d %H:%M:%S} UTC, or held)"
    if not count:
        return f"0 of {total} {rows} break the rule"
    columns = _checked_columns(check)
    worst = ""
    if len(columns) == 1 and pd.api.types.is_numeric_dtype(failing[columns[0]]):
        values = failing[columns[0]]
        worst = f" (values {_short(values.min())} to {_short(values.max())})"
    return f"{count} of {total} {rows} break the rule{worst}"


def _definition(frame: Frame, check: Check) -> str:
    """A fingerprint of what a check computes: when it changes, rows read before are read again."""
    text = json.dumps([frame.sql, check.expectation, check.kwargs], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rows_filter(suite: Suite, frame: Frame, checks: list[Check], since: datetime | None) -> tuple[str, list]:
    """The where-clause condition that replaces `{rows}` (new rows, and those the checks hold), and
    its parameters."""
    if frame.incremental is None or since is None:
        return "true", []
    conditions, params = [f'"{frame.incremental.loaded_at}" > ?'], [since]
    for check in (c for c in checks if c.quarantine is not None):
        conditions.append(f'"{check.quarantine.key}" in (select row_key from {store.QUARANTINE} '
                          "where suite = ? and expectation = ? and released_at is null)")
        params += [suite.name, check.name]
    return "(" + " or ".join(conditions) + ")", params


class Runner:
    """Validates suites against one warehouse connection, with one Great Expectations context.

    `warehouse` is the target's connection (`semantic.warehouse.Warehouse`): the frames are
    DuckDB's SQL, and it runs them in its own engine's.
    """

    def __init__(self, warehouse, gx_root: Path, run_id: str, now: datetime | None = None):
        import great_expectations as gx  # seconds to import: only when validating
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.warehouse, self.run_id, self.gx_root = warehouse, run_id, gx_root
        self.now = now or datetime.now(UTC)
        gx_root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", project_root_dir=str(gx_root))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.datasource = self.context.data_sources.add_or_update_pandas("warehouse")
        store.ensure_tables(warehouse)

    def validate(self, suite: Suite, only: set[str] | None = None) -> list[Outcome]:
        """Run the suite's checks (or those named in `only`) and record every outcome."""
        checks = [c for c in suite.checks if only is None or c.name in only]
        outcomes: list[Outcome] = []
        self._validated = []
        for frame_name in dict.fromkeys(c.frame for c in checks):
            frame = suite.frame(frame_name)
            frame_checks = [c for c in checks if c.frame == frame_name]
            definitions = {c.name: _definition(frame, c) for c in frame_checks}
            since = self._read_since(suite, frame, definitions)
            rows, params = _rows_filter(suite, frame, frame_checks, since)
            sql = frame.sql.replace("{now}", self.now.isoformat()).replace("{rows}", rows)
            try:
                df = self.warehouse.frame(sql, params)
            except Exception as exc:  # the driver's error names the table or column at fault
                why = f"frame {frame.name!r} failed: {str(exc).splitlines()[0]}"
                outcomes += [Outcome(suite.name, c, False, "no data", describe_expected(c), error=why)
                             for c in frame_checks]
                continue
            frame_outcomes = self._validate_frame(suite, frame, frame_checks, df, since)
            if frame.incremental is not None and len(df):
                through = df[frame.incremental.loaded_at].max().to_pydatetime()
                for outcome in (o for o in frame_outcomes if o.error is None):
                    store.advance(self.warehouse, suite.name, outcome.check.name, definitions[outcome.check.name],
                                  max(through, since or through), self.run_id, self.now)
            outcomes += frame_outcomes
            del df  # before the next frame is read: one frame in memory at a time
            self._let_frames_go()
        store.record_results(self.warehouse, [self._result_row(o) for o in outcomes])
        # Only this validation's pages (and the index): a full rebuild grows with the history.
        started = time.time()
        self.context.build_data_docs(resource_identifiers=self._validated)
        data_docs.make_offline(data_docs_index(self.gx_root).parent, since=started)
        return outcomes

    def _read_since(self, suite: Suite, frame: Frame, definitions: dict[str, str]) -> datetime | None:
        """The load after which an incremental frame reads rows; None to read every row."""
        if frame.incremental is None:
            return None
        through = store.validated_through(self.warehouse, suite.name, definitions).values()
        return None if None in through else min(through)

    def _validate_frame(self, suite: Suite, frame: Frame, checks: list[Check], df: pd.DataFrame,
                        since: datetime | None = None) -> list[Outcome]:
        from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

        gx = self.gx
        name = f"{suite.name}.{frame.name}"
        expectations = [ExpectationConfiguration(
            type=c.expectation, kwargs=c.kwargs,
            meta={"check": c.name, "severity": str(c.severity), "asset": "/".join(c.asset), "notes": c.description},
        ).to_domain_obj() for c in checks]
        gx_suite = self.context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=expectations))
        asset = self._dataframe_asset(name)
        batch = asset.add_batch_definition_whole_dataframe("frame") if not asset.batch_definitions \
            else asset.batch_definitions[0]
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch, suite=gx_suite))
        checkpoint = self.context.checkpoints.add_or_update(gx.Checkpoint(
            name=name, validation_definitions=[definition], result_format={"result_format": "COMPLETE"}))
        result = checkpoint.run(batch_parameters={"dataframe": df},
                                run_id=gx.core.run_identifier.RunIdentifier(run_name=self.run_id))
        self._validated += list(result.run_results)
        by_check = {r.expectation_config.meta["check"]: r
                    for run in result.run_results.values() for r in run.results}
        return [self._outcome(suite, frame, c, by_check[c.name], df, since) for c in checks]

    def _let_frames_go(self) -> None:
        """Great Expectations' pandas engine keeps every frame it validated (its batch manager's caches)
        for the life of the context: a suite's frames would all stay in memory together, and after the
        step too, when some are every row of a table (the raw events at ten times the sample: gigabytes,
        docs/scaling.md). Each is let go once its outcomes are taken; the results keep what they need."""
        batches = self.datasource.get_execution_engine().batch_manager
        batches.batch_data_cache.clear()
        batches.reset_batch_cache()

    def _dataframe_asset(self, name: str):
        try:
            return self.datasource.get_asset(name)
        except LookupError:
            return self.datasource.add_dataframe_asset(name)

    def _outcome(self, suite: Suite, frame: Frame, check: Check, validation, df: pd.DataFrame,
                 since: datetime | None) -> Outcome:
        result = dict(validation.result or {})
        if validation.exception_info and validation.exception_info.get("raised_exception"):
            why = str(validation.exception_info.get("exception_message")).splitlines()[0]
            return Outcome(suite.name, check, False, "no result", describe_expected(check), error=why)
        index = result.get("unexpected_index_list") or []
        failing = df.loc[index] if index and not isinstance(index[0], dict) else df.iloc[0:0]
        count = result.get("unexpected_count")
        outcome = Outcome(
            suite.name, check, bool(validation.success), _observed(result, count, failing, check, since),
            describe_expected(check), unexpected_count=count,
            examples=[_label(frame, row, _checked_columns(check)) for _, row in failing.head(EXAMPLES).iterrows()],
        )
        if check.quarantine is not None:
            self._quarantine(suite, check, failing, outcome)
        return outcome

    def _quarantine(self, suite: Suite, check: Check, failing: pd.DataFrame, outcome: Outcome) -> None:
        rule = check.quarantine
        if rule.keep_first and len(failing):
            failing = failing[failing.duplicated(subset=_checked_columns(check), keep="first")]
        columns = _checked_columns(check)
        reasons = {str(row[rule.key]): f"{check.name}: " + ", ".join(f"{c}={_short(row[c])}" for c in columns)
                   for _, row in failing.iterrows()}
        held = store.held_keys(self.warehouse, suite.name, check.name)
        new = {k: v for k, v in reasons.items() if k not in held}
        fixed = held - reasons.keys()
        if new:
            store.hold(self.warehouse, rule.source_table, suite.name, check.name, new, self.run_id, self.now)
        if fixed:
            store.release(self.warehouse, suite.name, check.name, fixed, self.run_id, self.now)
        outcome.newly_held, outcome.still_held, outcome.released = len(new), len(held & reasons.keys()), len(fixed)

    def _result_row(self, o: Outcome) -> tuple:
        held = o.newly_held + o.still_held
        return (self.run_id, o.suite, o.check.name, "/".join(o.check.asset), str(o.check.severity), o.success,
                o.error or o.observed, o.expected, o.unexpected_count, held, self.now)

