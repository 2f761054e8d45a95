"""Benchmark of the question translator: exact-match accuracy, refusals, and latency with execution.

Reads the published snapshot of a data directory (`make run` first: the default sample) and asks
every question of the gold set (`bench/questions_gold.yml`) in-process, as the metrics server's
route does (`semantic.questions.Asker` over a `MetricsService`), "now" being the morning after the
published data's last day. It prints:

- exact-match accuracy: answered questions whose Cube query equals the gold query once both are
  normalised (date ranges resolved by Cube's own resolver, filter values sorted);
- refusal accuracy: questions that must be asked back or refused, and were;
- wrong answers given with confidence: answered with another query, or answered when they must not
  be (the goal is zero);
- latency per question, the query's execution included (p50, p95, max; goal p95 < 300 ms), beside
  the baseline: the gold queries themselves, planned and run the same way on a second service
  without any reading of words (what the words cost on top of the query).

    make bench-questions            # or: python -m bench.questions --data-dir data
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path

import yaml

from ingestion.sample_data.calendar import us_holidays
from semantic.auth import ADMIN, SecurityContext
from semantic.cube_query import Translator, date_range
from semantic.questions import Asker
from semantic.settings import ServingSettings

GOLD = Path(__file__).with_name("questions_gold.yml")
DEFAULT_TENANT = "t001"


def load_gold(path: Path = GOLD) -> tuple[list[dict], list[dict]]:
    gold = yaml.safe_load(path.read_text())
    return gold["answerable"], gold["must_not_answer"]


def context_of(entry: dict) -> SecurityContext:
    tenant = entry.get("tenant", DEFAULT_TENANT)
    return SecurityContext(None, ADMIN) if tenant == "admin" else SecurityContext(tenant, "tenant")


def anchors(today: date) -> dict[str, str]:
    """The days the gold set's ranges name that Cube's relative ranges have no word for."""
    def last(name: str) -> date:
        days = [d for year in (today.year - 1, today.year) for d, n in us_holidays(year).items() if n == name]
        return max(d for d in days if d <= today)

    month_start = today.replace(day=1)
    m1_first = (month_start - timedelta(days=1)).replace(day=1)
    m2_last = m1_first - timedelta(days=1)
    week_start = today - timedelta(days=today.weekday())
    try:
        today_last_year = today.replace(year=today.year - 1)
    except ValueError:  # 29 February
        today_last_year = today.replace(year=today.year - 1, day=28)
    return {"year": str(today.year), "prev_year": str(today.year - 1), "today_last_year": today_last_year.isoformat(),
            "black_friday": last("black_friday").isoformat(), "cyber_monday": last("cyber_monday").isoformat(),
            "christmas": last("christmas").isoformat(), "m2_first": m2_last.replace(day=1).isoformat(),
            "m2_last": m2_last.isoformat(), "m1_last": (month_start - timedelta(days=1)).isoformat(),
            "w2_first": (week_start - timedelta(days=14)).isoformat(),
            "w2_last": (week_start - timedelta(days=8)).isoformat(), "week_start": week_start.isoformat(),
            "march_year": str(today.year if today.month >= 3 else today.year - 1)}


def _resolved(value, now: datetime, places: dict[str, str]) -> list[str]:
    text = [v.format(**places) for v in value] if isinstance(value, list) else value.format(**places)
    found = date_range(text, now, "gold")
    return [found.first.isoformat(), found.last.isoformat()]


def canonical(query: dict, now: datetime, places: dict[str, str]) -> dict:
    """A query with its ranges resolved to days and its filter values sorted, for comparison."""
    canon = {k: v for k, v in query.items() if v not in (None, [], {})}
    tds = []
    for td in canon.get("timeDimensions", []):
        td = dict(td)
        if "dateRange" in td:
            td["dateRange"] = _resolved(td["dateRange"], now, places)
        if "compareDateRange" in td:
            td["compareDateRange"] = [_resolved(r, now, places) for r in td["compareDateRange"]]
        tds.append(td)
    if tds:
        canon["timeDimensions"] = tds
    if "filters" in canon:
        canon["filters"] = sorted(({**f, "values": sorted(map(str, f["values"]))} for f in canon["filters"]),
                                  key=lambda f: (f["member"], f["operator"]))
    return canon


def data_now(asker: Asker) -> datetime:
    """The morning after the published data's last day: what "yesterday" means for this data."""
    version = asker.service.current()
    table = asker.service.publication.qualified("marts", "metrics_daily")
    _, rows = version.reader.run(f"select max(date_day) from {table}")
    last = rows[0][0]
    last = last.date() if isinstance(last, datetime) else last
    return datetime.combine(last + timedelta(days=1), clock(6), tzinfo=UTC)


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return f"p50 {q[49]:6.1f} ms  p95 {q[94]:6.1f} ms  max {ms[-1]:6.1f} ms  (n={len(ms)})"


def run_baseline(settings: ServingSettings, queries: list[tuple[dict, SecurityContext]]) -> list[float]:
    """The gold queries planned and run directly, as /load would (a service of their own: no cache shared)."""
    service = settings.service()
    service.current()
    times = []
    for query, context in queries:
        started = time.perf_counter()
        translator = Translator(service.catalog, context.tenant_id)
        ranges = query.get("timeDimensions", [{}])[0].get("compareDateRange")
        plain = [query] if not ranges else [
            {**query, "timeDimensions": [{**{k: v for k, v in query["timeDimensions"][0].items()
                                            if k != "compareDateRange"}, "dateRange": r}]} for r in ranges]
        for future in [service.submit(translator.plan(q), context.cache_key) for q in plain]:
            future.result()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--gold", type=Path, default=GOLD)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    env = {**os.environ, "PLATFORM_DATA_DIR": str(args.data_dir.resolve())}
    settings = ServingSettings.from_environment(env, require_secret=False)
    answerable, refusals = load_gold(args.gold)

    started = time.perf_counter()
    asker = Asker(settings.service())
    now = data_now(asker)
    asker.pinned_now = now
    places = anchors(now.date())
    opened = time.perf_counter() - started
    contexts = {c.cache_key: c for c in map(context_of, answerable + refusals)}
    prepare = {}
    for key, context in contexts.items():
        started = time.perf_counter()
        asker.reader(context)
        prepare[key] = time.perf_counter() - started
    print(f"data: {args.data_dir} (data version {asker.service.current().version}); now: {now:%Y-%m-%d %H:%M} UTC")
    print(f"opened the published version and built the catalog in {opened:.1f} s; read the vocabulary and the "
          "dimensions' values once per data version and tenant in " +
          ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in prepare.items()))

    latencies, matched, wrong, asked_back = [], 0, [], []
    for entry in answerable:
        started = time.perf_counter()
        answer = asker.ask(entry["q"], context_of(entry))
        latencies.append(time.perf_counter() - started)
        expected = canonical(entry["query"], now, places)
        if answer["status"] != "answered":
            asked_back.append((entry["q"], f"{answer['status']}: {answer['message']}"))
        elif canonical(answer["query"], now, places) == expected:
            matched += 1
        else:
            wrong.append((entry["q"], f"got {answer['query']}\n      want {expected}"))
    refused, answered_wrongly = 0, []
    for entry in refusals:
        started = time.perf_counter()
        answer = asker.ask(entry["q"], context_of(entry))
        latencies.append(time.perf_counter() - started)
        if answer["status"] == "answered":
            answered_wrongly.append((entry["q"], f"answered with {answer['query']}"))
        else:
            refused += 1
            if answer["status"] != entry["expect"]:
                print(f"  note: {entry['q']!r} was {answer['status']} ({answer['reason']}), "
                      f"the gold set says {entry['expect']}")

    for title, items in (("asked back, though the gold set has a query", asked_back),
                         ("WRONG: answered with another query", wrong),
                         ("WRONG: answered though it must not be", answered_wrongly)):
        if items:
            print(f"\n{title}:")
            for question, why in items:
                print(f"  {question!r}\n      {why}")
    baseline = run_baseline(settings, [(canonical(e["query"], now, places), context_of(e)) for e in answerable])
    accuracy = matched / len(answerable)
    refusal_accuracy = refused / len(refusals)
    print(f"\nexact-match accuracy of the query: {matched}/{len(answerable)} = {accuracy:.1%}  (goal >= 95 %)")
    print(f"refusal accuracy (asked back or refused): {refused}/{len(refusals)} = {refusal_accuracy:.1%}  "
          "(goal >= 95 %)")
    print(f"wrong answers given with confidence: {len(wrong) + len(answered_wrongly)}  (goal 0)")
    print(f"latency per question, execution included: {percentiles(latencies)}  (goal p95 < 300 ms)")
    print(f"baseline, the gold queries run directly:   {percentiles(baseline)}")


if __name__ == "__main__":
    main()
