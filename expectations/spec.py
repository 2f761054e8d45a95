"""The shape of a quality suite: frames to validate, expectations on them, and what each one guards.

Suites are plain data so that they can be reviewed like dbt YAML and read without importing
Great Expectations (which takes seconds): the Dagster code location builds its asset checks
from them at load time, and only the runner turns them into Great Expectations objects.

A *frame* is a query on the warehouse whose result Great Expectations validates: the raw rows
themselves for row-level rules, or an aggregate (daily volume per tenant, a reconciliation)
computed by the warehouse where scanning every row in Python would be wasteful.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """Critical expectations block everything downstream; warnings are recorded and shown only."""

    CRITICAL = "critical"
    WARNING = "warning"


@dataclass(frozen=True)
class Incremental:
    """A frame whose checks need to read only the rows loaded since they last ran.

    Sound only for rules that judge each row alone and whose verdict on a row cannot turn from
    pass to fail later: a property schema, "not dated in the future" (the clock only moves
    forward). A rule over many rows (uniqueness) or one that time can break (retention) needs the
    whole frame. Rows a check holds in the quarantine are read again every time, so they are
    released once they pass. A changed check (its query, expectation or arguments) reads
    everything again.

    The frame's query puts `{rows}` in its where clause; the runner replaces it with the filter
    (`true` when it reads everything), so the warehouse skips old rows before computing anything.
    """

    # A column that grows with every load and is fixed once a row is written (dlt's `_loaded_at`):
    # loads of one raw table commit one after another (the warehouse pool), in this column's order.
    loaded_at: str


@dataclass(frozen=True)
class Frame:
    """A named query; `{now}` in it is replaced by the validation time (UTC, ISO timestamp)."""

    name: str
    sql: str
    # Columns that identify a row of the frame in messages, e.g. ("tenant_id", "date_day").
    label: tuple[str, ...] = ()
    incremental: Incremental | None = None

    def __post_init__(self):
        if self.incremental is not None and "{rows}" not in self.sql:
            raise ValueError(f"frame {self.name!r} is incremental but its query has no {{rows}} in a where clause")


@dataclass(frozen=True)
class Quarantine:
    """Row-level failures of an expectation are held back from the models, by this key.

    `source_table` is the raw table the key belongs to; staging models leave out keys that are
    held (see the `without_quarantined` dbt macro). `keep_first` keeps the first row of each
    group of duplicates flowing and holds only the copies.
    """

    source_table: str
    key: str
    keep_first: bool = False


@dataclass(frozen=True)
class Check:
    """One expectation: its Great Expectations type and arguments, on one frame, guarding one asset."""

    name: str
    asset: tuple[str, ...]
    frame: str
    expectation: str
    kwargs: dict[str, Any]
    severity: Severity
    description: str
    quarantine: Quarantine | None = None

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.CRITICAL


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    frames: tuple[Frame, ...]
    checks: tuple[Check, ...] = field(default_factory=tuple)

    def frame(self, name: str) -> Frame:
        for frame in self.frames:
            if frame.name == name:
                return frame
        raise KeyError(f"suite {self.name!r} has no frame {name!r}")
