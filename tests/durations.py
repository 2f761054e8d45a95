"""Where the test suite's time goes: `make test-durations` runs the suite as `make test` does, then
this prints the time per folder and the slowest tests from pytest's JUnit report.

A test's time is its setup, call and teardown, so a shared fixture (the main job's run, the built
warehouse) counts in the first test that asked for it. With several workers, the folders' times
add up to more than the wall time, which is printed too.
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def durations(report: Path) -> tuple[float, list[tuple[float, str]]]:
    """The suite's wall time and every test's (seconds, node id)."""
    root = ET.parse(report).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests = []
    for case in suite.iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        tests.append((float(case.get("time", 0)), f"{module}::{case.get('name')}"))
    return float(suite.get("time", 0)), tests


def by_folder(tests: list[tuple[float, str]]) -> dict[str, float]:
    folders: dict[str, float] = defaultdict(float)
    for seconds, node in tests:
        parts = node.split("::")[0].split("/")
        folders["/".join(parts[:2]) if len(parts) > 2 else parts[0]] += seconds
    return dict(sorted(folders.items(), key=lambda item: -item[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="pytest's --junitxml report")
    parser.add_argument("--slowest", type=int, default=25)
    args = parser.parse_args()
    wall, tests = durations(args.report)
    print(f"{len(tests)} tests in {wall:.0f} s of wall time ({sum(s for s, _ in tests):.0f} s of test time)")
    print("\nper folder (setup + call + teardown):")
    for folder, seconds in by_folder(tests).items():
        print(f"  {folder:<28} {seconds:8.1f} s")
    print(f"\nthe {args.slowest} slowest tests:")
    for seconds, node in sorted(tests, reverse=True)[:args.slowest]:
        print(f"  {seconds:8.1f} s  {node}")


if __name__ == "__main__":
    main()
