"""`python -m ingestion.sample_data --size tiny --data-dir data` writes a sample."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import date
from pathlib import Path

from ingestion.paths import DataLayout
from ingestion.sample_data import SIZES, generate
from ingestion.sample_data.faults import FAULTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the size's users (and events)")
    parser.add_argument("--end-date", type=date.fromisoformat, default=None,
                        help="last day of the sample (default: a fixed day, for reproducible numbers)")
    parser.add_argument("--fault", action="append", default=[], choices=sorted(FAULTS),
                        help="inject a fault into the last day, to prove the quality gates (repeatable)")
    args = parser.parse_args()
    size = SIZES[args.size] if args.scale == 1 else SIZES[args.size].scaled(args.scale)
    if args.end_date is not None:
        size = replace(size, end_date=args.end_date)
    truth = generate(DataLayout(args.data_dir), size, args.seed, tuple(args.fault))
    print(json.dumps({k: truth[k] for k in ("events", "marketing", "app_db", "faults", "seconds")}, indent=2))


if __name__ == "__main__":
    main()
