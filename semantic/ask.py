"""Ask the governed metrics a question from the shell: `python -m semantic.ask "revenue in Germany last month"`.

Reads the published data in-process (as the metrics server does, with the same settings:
PLATFORM_DATA_DIR, DBT_TARGET, PLATFORM_NOW), for one tenant (`--tenant t001`) or, as whoever can read
the data directory, for every tenant. Prints the sentence saying what was computed, the numbers and
the query that ran (`--json`: the whole answer, as `POST /cubejs-api/v1/question` returns it).

Exit status: 0 answered, 3 asked back or refused (the message names the closest metrics), 2 a
question that cannot be read at all (empty, too long) or a bad setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from semantic.auth import ADMIN, SecurityContext
from semantic.questions import Asker, QuestionError
from semantic.questions.parse import check_question
from semantic.settings import ServingSettings, SettingsError


def render(answer: dict) -> str:
    """The answer for a person reading a terminal."""
    if answer["status"] != "answered":
        lines = [f"{answer['status']}: {answer['message']}"]
        if answer["metrics"]:
            lines.append("closest metrics: " + "; ".join(f"{m['name']} ({m['title']})" for m in answer["metrics"]))
        if answer["dimensions"]:
            lines.append("closest dimensions: " + "; ".join(f"{d['name']} ({d['title']})"
                                                            for d in answer["dimensions"]))
        return "\n".join(lines)
    lines = [answer["sentence"], answer["text"]]
    for typo in answer["read_as"]:
        lines.append(f"(read {typo['typed']!r} as {typo['read']!r})")
    if "headline" not in answer:
        rows = answer["data"]
        columns = list(dict.fromkeys(k for row in rows for k in row if not k.endswith(".metric_time")))
        lines.append("\t".join(columns))
        lines += ["\t".join(str(row.get(c, "")) for c in columns) for row in rows]
    lines.append("query: " + json.dumps(answer["query"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Answer a question with the governed metrics.")
    parser.add_argument("question")
    parser.add_argument("--tenant", help="answer for this tenant only (default: every tenant)")
    parser.add_argument("--timezone", default="UTC", help="the time zone days are counted in (default UTC)")
    parser.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        check_question(args.question)  # before the published data is opened: a bad question fails at once
        settings = ServingSettings.from_environment(require_secret=False)
        asker = Asker(settings.service(), settings.now)
        context = SecurityContext(args.tenant, "tenant") if args.tenant else SecurityContext(None, ADMIN)
        if args.tenant and args.tenant not in asker.service.current().tenants:
            raise QuestionError(f"--tenant: {args.tenant!r} is not a tenant the published data knows")
        answer = asker.ask(args.question, context, args.timezone)
    except (QuestionError, SettingsError, FileNotFoundError) as exc:
        print(f"semantic.ask: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer, indent=2) if args.json else render(answer))
    return 0 if answer["status"] == "answered" else 3


if __name__ == "__main__":
    sys.exit(main())
