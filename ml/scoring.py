"""Insights scored against the sample generator's ground truth of injected anomalies.

An injected anomaly is a (tenant, day) where one metric was pushed; the metrics that follow it
move too (fewer active users also means fewer sessions). So detection is scored per tenant and
day: a flagged tenant-day is a true positive when an anomaly was injected there, and an injected
anomaly is found when its tenant-day is flagged. The strict per-metric figures are kept as well.
The all-tenants series are left out: the truth is per tenant.
"""

from __future__ import annotations

import pandas as pd

from ml.series import TOTAL


def score(insights: pd.DataFrame, truth: list[dict]) -> dict[str, float]:
    anomalies = insights[insights["insight_type"].str.startswith("anomaly") & (insights["tenant_id"] != TOTAL)]
    flagged = {(t, pd.Timestamp(d).date().isoformat()) for t, d in zip(anomalies["tenant_id"], anomalies["date_day"],
                                                                         strict=True)}
    injected = {(a["tenant_id"], a["date"]) for a in truth}
    flagged_metric = {(t, pd.Timestamp(d).date().isoformat(), m) for t, d, m in
                      zip(anomalies["tenant_id"], anomalies["date_day"], anomalies["metric"], strict=True)}
    injected_metric = {(a["tenant_id"], a["date"], a["metric"]) for a in truth}
    hits = len(flagged & injected)
    return {
        "injected": len(injected), "flagged_tenant_days": len(flagged), "true_positives": hits,
        "precision": hits / len(flagged) if flagged else float("nan"),
        "recall": hits / len(injected) if injected else float("nan"),
        "recall_exact_metric": len(flagged_metric & injected_metric) / len(injected_metric) if injected_metric
        else float("nan"),
        "false_positives": sorted(f"{t} {d}" for t, d in flagged - injected),
        "missed": sorted(f"{t} {d}" for t, d in injected - flagged),
    }
