"""Alerts for high-severity insights: an outbox the insights step writes and a sender that empties it.

An anomaly is alerted on its day, on its provisional verdict (`ml.detection`); when the confirmed
verdict, two weeks later, withdraws an anomaly that was alerted or is queued, the withdrawal is
alerted too (whatever its severity), so whoever acted on the alert learns it was not one.

The insights step only writes a file (`pending/*.json`, fsynced, renamed into place), so a slow or
dead webhook never holds up the pipeline; a sensor starts the sender as soon as a file is there.
An insight is alerted once: the sender records each delivered insight's key (type, metric, tenant,
day) in `alerted.jsonl` before it moves the file to `sent/`, and the insights step skips keys
already there or pending. A file whose delivery failed stays pending and is sent on the next try.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from ingestion.paths import write_atomically
from reports.delivery import Delivery
from reports.exports import python_scalar

HIGH = "high"
WITHDRAWN = "withdrawn_anomaly"
ANOMALIES = ("anomaly_spike", "anomaly_drop")
FIELDS = ("insight_type", "metric", "tenant_id", "date_day", "severity", "confidence", "value", "expected",
          "explanation", "drivers", "recommendation", "impact", "priority")
OPTIONAL = {"drivers", "recommendation", "impact", "priority"}  # an insight table of before they existed lacks them


def key(insight: dict) -> str:
    return "|".join(str(insight[part]) for part in ("insight_type", "metric", "tenant_id", "date_day"))


class Outbox:
    def __init__(self, directory: Path):
        self.directory = directory
        self.pending_dir = directory / "pending"
        self.sent_dir = directory / "sent"
        self.ledger = directory / "alerted.jsonl"

    def enqueue(self, insights: pd.DataFrame) -> int:
        """Queue the high-severity insights not alerted or queued before, and the withdrawals of
        anomalies that were; returns how many."""
        wanted = insights[(insights["severity"] == HIGH) | (insights["insight_type"] == WITHDRAWN)]
        known = self.alerted() | {key(row) for path in self.pending() for row in _rows(path)}
        columns = [f for f in FIELDS if f in wanted or f not in OPTIONAL]
        rows = [_plain(row) for row in wanted[columns].to_dict("records")]
        new = [row for row in rows if key(row) not in known
               and (row["insight_type"] != WITHDRAWN or _withdraws(row) & known)]
        if new:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            self.pending_dir.mkdir(parents=True, exist_ok=True)
            write_atomically(self.pending_dir / f"{stamp}.json", json.dumps(new, indent=1).encode())
        return len(new)

    def pending(self) -> list[Path]:
        return sorted(self.pending_dir.glob("*.json"))

    def alerted(self) -> set[str]:
        if not self.ledger.exists():
            return set()
        return {json.loads(line)["key"] for line in self.ledger.read_text().splitlines() if line.strip()}

    def deliver(self, send: Callable[[list[dict]], Delivery]) -> list[Delivery]:
        """Send each pending file's insights (those not alerted since); a delivered file moves to `sent/`."""
        results = []
        alerted = self.alerted()
        for path in self.pending():
            rows = [row for row in _rows(path) if key(row) not in alerted]
            if rows:
                result = send(rows)
                results.append(result)
                if not result.ok:
                    continue
                self._record(key(row) for row in rows)
                alerted |= {key(row) for row in rows}
            self.sent_dir.mkdir(parents=True, exist_ok=True)
            os.replace(path, self.sent_dir / path.name)
        return results

    def _record(self, keys: Iterable[str]) -> None:
        sent_at = datetime.now(UTC).isoformat(timespec="seconds")
        with self.ledger.open("a") as ledger:
            ledger.writelines(json.dumps({"key": k, "sent_at": sent_at}) + "\n" for k in keys)
            ledger.flush()
            os.fsync(ledger.fileno())


def _withdraws(row: dict) -> set[str]:
    """The keys of the anomalies a withdrawn anomaly's row withdraws (a rise or a drop, that day)."""
    return {key({**row, "insight_type": kind}) for kind in ANOMALIES}


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def _plain(row: dict) -> dict:
    """JSON-ready values: days as ISO dates, numpy scalars as Python ones, NaN as None."""
    values = {name: python_scalar(value) for name, value in row.items()}
    return {name: value.date().isoformat() if isinstance(value, datetime)
            else value.isoformat() if isinstance(value, date) else value for name, value in values.items()}
