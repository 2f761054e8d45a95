"""Named sample sizes: tiny for tests, default for the main job, large for benchmarks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

# A fixed last day keeps the output a pure function of (size, seed); pass end_date to move it.
DEFAULT_END_DATE = date(2026, 10, 31)


@dataclass(frozen=True)
class SampleSize:
    name: str
    days: int
    tenants: int
    users: int
    products_per_tenant: int
    anomalies: int
    experiments: int
    end_date: date = DEFAULT_END_DATE
    # How many of the experiments (the last ones) mislabel part of their treatment group, a sample-ratio
    # mismatch for the experiment analysis to flag (activity.plan_experiments).
    sample_ratio_mismatches: int = 0

    @property
    def start_date(self) -> date:
        return date.fromordinal(self.end_date.toordinal() - self.days + 1)

    def scaled(self, factor: float) -> SampleSize:
        """The same product with `factor` times the users (and so about that many more events)."""
        return replace(self, name=f"{self.name}x{factor:g}", users=int(self.users * factor))


SIZES: dict[str, SampleSize] = {
    # ~25k events: enough history for every mart, fast enough for every test.
    "tiny": SampleSize("tiny", days=35, tenants=3, users=300, products_per_tenant=8, anomalies=2, experiments=1),
    # ~1M events over 90 days: the main job's embedded default.
    "default": SampleSize("default", days=90, tenants=8, users=6000, products_per_tenant=25, anomalies=6,
                          experiments=3, sample_ratio_mismatches=1),
    # Tens of millions of events: benchmarks only.
    "large": SampleSize("large", days=120, tenants=20, users=80000, products_per_tenant=40, anomalies=12,
                        experiments=4, sample_ratio_mismatches=1),
}
