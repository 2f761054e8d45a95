"""The experiment metrics, read from their one definition: the dbt semantic layer.

`_experiments__semantic.yml` defines them as ratio metrics over the semantic model
`experiment_outcomes` (one row per analysed user). A ratio whose denominator counts users is a
per-user mean (orders per user, conversion rate); any other is a ratio of sums over users (average
order value), compared with the delta method. Each per-user mean whose outcome column has a
`pre_` twin in the outcomes mart gets that column as its CUPED covariate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

OUTCOMES_MODEL = "experiment_outcomes"


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    numerator: str  # a column of fct_experiment_outcomes (and of the daily mart)
    denominator: str | None  # None: a per-user mean
    covariate: str | None  # the pre-exposure column CUPED adjusts with

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in (self.numerator, self.denominator) if c)


class MetricDefinitionError(ValueError):
    """The semantic manifest does not define the experiment metrics as the analysis needs them."""


def experiment_metrics(manifest: dict, columns: set[str]) -> dict[str, Metric]:
    """The experiment metrics of a semantic manifest (`semantic_manifest.json` as dbt writes it),
    given the outcome mart's `columns`."""
    models = [m for m in manifest["semantic_models"] if m["name"] == OUTCOMES_MODEL]
    if not models:
        raise MetricDefinitionError(f"the semantic manifest has no semantic model {OUTCOMES_MODEL!r}")
    measures = {m["name"]: m for m in models[0]["measures"]}
    simple = {m["name"]: m["type_params"]["measure"]["name"] for m in manifest["metrics"]
              if m["type"] == "simple" and m["type_params"]["measure"]["name"] in measures}
    found = {}
    for metric in manifest["metrics"]:
        if metric["type"] != "ratio":
            continue
        parts = [metric["type_params"][side]["name"] for side in ("numerator", "denominator")]
        if not all(p in simple for p in parts):
            continue
        numerator, denominator = (measures[simple[p]] for p in parts)
        if numerator["agg"] != "sum" or denominator["agg"] not in ("sum", "count"):
            raise MetricDefinitionError(f"experiment metric {metric['name']}: the analysis needs sums of user "
                                        "facts over a count of users or another sum")
        num_column = numerator.get("expr") or numerator["name"]
        per_user = denominator["agg"] == "count"
        den_column = None if per_user else denominator.get("expr") or denominator["name"]
        for column in (num_column, den_column):
            if column is not None and column not in columns:
                raise MetricDefinitionError(f"experiment metric {metric['name']}: {column!r} is not a column of "
                                            f"the outcomes mart ({', '.join(sorted(columns))})")
        covariate = f"pre_{num_column}" if per_user and f"pre_{num_column}" in columns else None
        found[metric["name"]] = Metric(metric["name"], metric.get("label") or metric["name"], num_column,
                                       den_column, covariate)
    return found


def load(semantic_manifest: Path, columns: set[str]) -> dict[str, Metric]:
    if not semantic_manifest.exists():
        raise MetricDefinitionError(f"no semantic manifest at {semantic_manifest}: run `make manifest` (dbt parse)")
    return experiment_metrics(json.loads(semantic_manifest.read_text()), columns)
