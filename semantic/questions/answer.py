"""A question answered: read into a Cube query, run exactly as `/cubejs-api/v1/load` runs it
(`Translator` for the caller's tenant, then `MetricsService`: validation, tenancy, rollups and caches
apply unchanged), and said in one sentence.

The reply (a dict, JSON as it stands) is one of:

- `status: "answered"`: `query` (the Cube query that ran; its date ranges are absolute, so running it
  again gives the same numbers), `data` (the rows, as /load returns them), `sentence` (what was
  computed: each metric's definition, the range, the filters, the tenant), `headline` (the number(s)
  when there is one row), `compare` (the previous period's rows and the change), `read_as` (typos
  forgiven: what was typed and what was read);
- `status: "clarify"` (asked back: ambiguous, or not something the layer has) or `"refused"` (SQL,
  instructions, another tenant, a grain the metric is not kept at): `message`, `reason`, and the
  closest `metrics` and `dimensions` with their titles and descriptions.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from semantic.auth import ADMIN, SecurityContext
from semantic.cube_query import QueryError, Translator
from semantic.members import TIME_DIMENSION
from semantic.questions.dates import Calendars, DateParser, NamedDays, RetailCalendar, TableCalendar
from semantic.questions.parse import Intent, QuestionError, Reader, Unanswered, check_question
from semantic.questions.vocabulary import MAX_VALUES, Phrases, ValueCache, Vocabulary
from semantic.service import MetricsService

EVENTS_CALENDAR = ("marts", "events_calendar")  # the dbt seed of named days, once published


class Asker:
    """Answers questions over one metrics service; relative dates count from `now` (the settings'
    PLATFORM_NOW), or from the clock when it is None."""

    def __init__(self, service: MetricsService, now: datetime | None = None,
                 calendar: NamedDays | None = None):
        self.service = service
        self.pinned_now = now
        self._calendar = calendar
        self._values = ValueCache()
        self._lock = threading.Lock()
        self._vocabulary: tuple[object, Vocabulary] | None = None
        self._readers: dict[tuple[str, str | None], Reader] = {}

    # -- the parts, cached per catalog / data version / tenant ------------------------------------
    def vocabulary(self) -> Vocabulary:
        catalog = self.service.catalog
        cached = self._vocabulary
        if cached is None or cached[0] is not catalog:
            manifest = self.service.lookup.semantic_manifest
            metric_meta = {m.name: dict(m.config.meta or {}) if m.config is not None else {} for m in manifest.metrics}
            dimension_meta = {d.name: dict(d.config.meta or {}) if d.config is not None else {}
                              for model in manifest.semantic_models for d in model.dimensions}
            cached = (catalog, Vocabulary(catalog, metric_meta, dimension_meta))
            self._vocabulary = cached
        return cached[1]

    def reader(self, context: SecurityContext) -> Reader:
        version = self.service.current()
        key = (version.version, context.tenant_id)
        with self._lock:
            found = self._readers.get(key)
        if found is not None:
            return found
        vocabulary = self.vocabulary()
        values = self._values.get(version.version, context.tenant_id, vocabulary.enumerable(),
                                  lambda g: self._read_values(g, context))
        admin = SecurityContext(None, ADMIN)
        everyone = values if context.tenant_id is None else self._values.get(
            version.version, None, vocabulary.enumerable(), lambda g: self._read_values(g, admin))
        own = {str(v).lower() for g in ("tenant", "tenant__tenant_name") for v in values.get(g, [])}
        foreign = set() if context.tenant_id is None else {
            str(v).lower() for g in ("tenant", "tenant__tenant_name") for v in everyone.get(g, [])} - own
        phrases = vocabulary.value_phrases(values)
        codes = {g: v for g, v in values.items() if v and all(isinstance(x, str) and len(x) == 2 and x.isupper()
                                                             for x in v)}
        reader = Reader(vocabulary, _without_metric_phrases(phrases, vocabulary), DateParser(self._calendars(version)),
                        context.tenant_id, codes, foreign)
        with self._lock:
            self._readers = {k: v for k, v in self._readers.items() if k[0] == version.version}
            self._readers[key] = reader
        return reader

    def _calendars(self, version) -> NamedDays:
        """The named days: the published events calendar (if this release has it) before the computed ones."""
        if self._calendar is not None:
            return self._calendar
        try:
            table = self.service.publication.qualified(*EVENTS_CALENDAR)
            _, rows = version.reader.run(f"select event_date, event_id, event_name, tenant_id from {table}")
        except Exception:  # not published (yet): the computed calendar alone
            return RetailCalendar()
        return Calendars(TableCalendar(rows), RetailCalendar())

    def _read_values(self, group_by: str, context: SecurityContext) -> list[str] | None:
        """A dimension's values the context may see, through the REST API's own path: the union over
        the views that have it (a view's facts may cover only some: spend has no organic channel)."""
        catalog = self.service.catalog
        futures = []
        for view in catalog.views.values():
            member = f"{view.name}.{group_by}"
            if member not in view.dimensions:
                continue
            measure = min(view.measures.values(), key=lambda m: (m.agg_type == "number", m.cumulative, m.member))
            plan = Translator(catalog, context.tenant_id).plan(
                {"measures": [measure.member], "dimensions": [member], "limit": MAX_VALUES})
            futures.append((member, self.service.submit(plan, context.cache_key)))
        if not futures:
            return None
        return sorted({row[member] for member, future in futures for row in future.result().rows
                       if row[member] is not None}, key=str)

    # -- answering --------------------------------------------------------------------------------
    def ask(self, question, context: SecurityContext, timezone: str = "UTC") -> dict:
        """The answer to a question (raises QuestionError for a request with no readable question)."""
        text = check_question(question)
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise QuestionError(f"timezone: unknown time zone {timezone!r}") from None
        today = (self.pinned_now or datetime.now(UTC)).astimezone(zone).date()
        reader = self.reader(context)
        try:
            intent = reader.read(text, today)
        except Unanswered as exc:
            return self.unanswered(text, exc)
        query = to_cube(intent, timezone)
        try:
            results = self._run(query, intent, context)
        except QueryError as exc:  # the layer refused the query it was given: say so, never guess
            return self.unanswered(text, Unanswered("refused", "query", f"The query read from the question was "
                                                    f"refused: {exc}", intent.metrics))
        return self._answered(text, intent, query, results, context)

    def _run(self, query: dict, intent: Intent, context: SecurityContext) -> list:
        translator = Translator(self.service.catalog, context.tenant_id)
        queries = [query] if intent.compare is None else [
            {**query, "timeDimensions": [{k: v for k, v in td.items() if k != "compareDateRange"} | {"dateRange": r}
                                         for td in query["timeDimensions"]]}
            for r in query["timeDimensions"][0]["compareDateRange"]]
        futures: list[Future] = [self.service.submit(translator.plan(q), context.cache_key) for q in queries]
        return [f.result() for f in futures]

    def unanswered(self, question: str, exc: Unanswered) -> dict:
        vocab = self.vocabulary()
        return {"status": exc.status, "question": question, "reason": exc.reason, "message": exc.message,
                "metrics": [{"name": m, "title": vocab.metrics[m].title, "description": vocab.metrics[m].description}
                            for m in exc.metrics if m in vocab.metrics],
                "dimensions": [{"name": d, "title": vocab.dimensions[d].title,
                                "description": vocab.dimensions[d].description}
                               for d in exc.dimensions if d in vocab.dimensions]}

    def _answered(self, question: str, intent: Intent, query: dict, results: list, context) -> dict:
        vocab = self.vocabulary()
        current = results[0]
        answer = {"status": "answered", "question": question, "query": query, "data": current.rows,
                  "sentence": sentence(intent, vocab, context.tenant_id), "dataVersion": current.data_version,
                  "read_as": [{"typed": typed, "read": read} for typed, read in intent.fuzzy]}
        measures = [f"{intent.view}.{m}" for m in intent.metrics]
        if len(current.rows) == 1 and not intent.group_by and intent.grain is None:
            answer["headline"] = {m: current.rows[0].get(m) for m in measures}
        if intent.compare is not None:
            previous = results[1]
            answer["compare"] = {"dateRange": intent.compare.as_cube(), "data": previous.rows}
            if answer.get("headline") is not None and len(previous.rows) == 1:
                answer["compare"]["change"] = {m: _change(current.rows[0].get(m), previous.rows[0].get(m))
                                               for m in measures}
        answer["text"] = summary(answer, intent, vocab)
        return answer


def _change(now, before) -> dict:
    now_value = float(now) if now is not None else None
    before_value = float(before) if before is not None else None
    change = None if now_value is None or before_value is None else now_value - before_value
    pct = None if change is None or not before_value else change / abs(before_value)
    return {"current": now, "previous": before, "change": change, "change_ratio": pct}


def _without_metric_phrases(values: Phrases, vocabulary: Vocabulary) -> Phrases:
    """Values spelled like a metric ("experiment orders per user", a primary metric's name) are not
    read as values: a metric's name means the metric."""
    kept = Phrases()
    for words, found in values.entries.items():
        if not any(t.kind == "metric" for _, t in vocabulary.phrases.entries.get(words, [])):
            kept.entries[words] = found
    return kept


def to_cube(intent: Intent, timezone: str = "UTC") -> dict:
    """The Cube query an intent means, members named in its view."""
    view = intent.view
    query: dict = {"measures": [f"{view}.{m}" for m in intent.metrics]}
    if intent.group_by:
        query["dimensions"] = [f"{view}.{g}" for g in intent.group_by]
    if intent.grain is not None or intent.span is not None:
        td: dict = {"dimension": f"{view}.{TIME_DIMENSION}"}
        if intent.grain is not None:
            td["granularity"] = intent.grain
        if intent.compare is not None:
            td["compareDateRange"] = [intent.span.as_cube(), intent.compare.as_cube()]
        elif intent.span is not None:
            td["dateRange"] = intent.span.as_cube()
        query["timeDimensions"] = [td]
    if intent.filters:
        query["filters"] = [{"member": f"{view}.{f.group_by}", "operator": "notEquals" if f.negated else "equals",
                             "values": [str(v).lower() if isinstance(v, bool) else v for v in f.values]}
                            for f in intent.filters]
    if intent.order:
        query["order"] = [[f"{view}.{TIME_DIMENSION}" if kind == "time" else f"{view}.{key}",
                           "desc" if desc else "asc"] for kind, key, desc in intent.order]
    if intent.limit is not None:
        query["limit"] = intent.limit
    if timezone != "UTC":
        query["timezone"] = timezone
    return query


def sentence(intent: Intent, vocab: Vocabulary, tenant: str | None) -> str:
    """One sentence: what was computed (each metric and its definition), over which range, cut and
    filtered how, for whom."""
    metrics = "; ".join(f"{vocab.metrics[m].title} ({m}: {_definition(vocab.metrics[m].description)})"
                        for m in intent.metrics)
    parts = [f"Computed {metrics}"]
    if intent.span is not None:
        said = intent.span.describe()
        parts.append(said if said.startswith(("since ", "between ", "from ")) else f"over {said}")
    else:
        parts.append("over every day with data")
    if intent.compare is not None:
        parts.append(f"against {intent.compare.describe()}")
    if intent.grain is not None:
        parts.append(f"by {intent.grain}")
    if intent.group_by:
        parts.append("by " + " and ".join(vocab.dimensions[g].title for g in intent.group_by))
    for f in intent.filters:
        values = " or ".join(f.labels)
        parts.append(f"where {vocab.dimensions[f.group_by].title} is {'not ' if f.negated else ''}{values}")
    if intent.limit is not None:
        kind, key, desc = intent.order[0]
        parts.append(f"keeping the {'top' if desc else 'bottom'} {intent.limit} by {vocab.metrics[key].title}"
                     if kind == "metric" else f"keeping the first {intent.limit}")
    parts.append(f"for tenant {tenant}" if tenant is not None else "for every tenant")
    return ", ".join(parts) + "."


def _definition(description: str) -> str:
    text = description.strip().rstrip(".").replace("(", "- ").replace(")", "")
    return text[:1].lower() + text[1:] if text else "no description"


def format_value(value, info) -> str:
    if value is None:
        return "no data"
    number = float(value)
    if info.format == "percent":
        return f"{number * 100:,.2f} %"
    text = f"{number:,.2f}" if not number.is_integer() or info.format == "currency" else f"{int(number):,}"
    return f"{text} USD" if info.format == "currency" else text


def summary(answer: dict, intent: Intent, vocab: Vocabulary) -> str:
    """The numbers in words, for a person (the CLI, the page): the headline, or the rows' count."""
    headline = answer.get("headline")
    if headline is None:
        return f"{len(answer['data'])} rows."
    parts = []
    for metric in intent.metrics:
        member = f"{intent.view}.{metric}"
        info = vocab.metrics[metric]
        text = f"{info.title}: {format_value(headline.get(member), info)}"
        change = answer.get("compare", {}).get("change", {}).get(member)
        if change is not None:
            ratio = change["change_ratio"]
            text += f" (before: {format_value(change['previous'], info)}" + (
                f", {ratio * 100:+.1f} %)" if ratio is not None else ")")
        parts.append(text)
    return "; ".join(parts) + "."
