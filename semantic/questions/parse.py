"""An English question, read into an `Intent` over the governed definitions, or not read at all.

The reading is deliberately strict, because a wrong number given with confidence is worse than a
question back: every word must be accounted for, as a metric, a dimension, a value, a date phrase,
a grain, an order, a top-N, or one of the small words questions are made of. A word that is none of
these (a typo too far from anything, a filter the layer does not have, another language) is named
in a question back, with the closest metrics and dimensions, never dropped. So are ties: a phrase
that names two things in the view ("country" of the user or of the event) is asked about.

Typos are forgiven by an edit distance (Damerau-Levenshtein, transpositions count one) against the
catalog's own phrases, for words of five letters or more; short words must be exact.

Text that tries to instruct rather than ask (SQL, "ignore the tenant filter", another tenant's name)
is refused before any reading: tenancy comes from the token, never from the question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rapidfuzz import process
from rapidfuzz.distance import DamerauLevenshtein

from semantic.cube_query import QueryError
from semantic.members import GRANULARITIES
from semantic.questions.dates import NUMBERS, DateError, DateParser, Span
from semantic.questions.vocabulary import Phrases, Target, Vocabulary, words_of

MAX_QUESTION_CHARS = 500
FUZZY_MIN_LETTERS = 5
FUZZY_CUTOFF = 0.8

GRAINS = {"minutely": "minute", "hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month",
          "quarterly": "quarter", "yearly": "year", "annually": "year", "annual": "year"}
# the small words of questions: neither metrics nor filters (a word outside every list is asked about)
FILLER = frozenset("""
a about across all also am amount an and any are as at be been breakdown broken brought by came can come could
currently data day days did do does down during each earn earned every far figure figures for from get give
got group grouped had has have hello hi how i in is it its just kpi kpis let level levels list look made make
many me metric metrics much my new number numbers of on our over overall per please report see show so split
tally tell than that the their there these this those through to together total totals up us value values vs
want was we were what what's whats when where which who with within would you your
""".split())  # noqa: SIM905 (a list of words reads better so)
NEGATIONS = frozenset({"excluding", "except", "not", "without", "outside", "exclude"})
TOP_WORDS = {"top": True, "best": True, "highest": True, "largest": True, "biggest": True, "most": True,
             "bottom": False, "worst": False, "lowest": False, "smallest": False, "least": False, "fewest": False}
RANKINGS = frozenset({"top", "bottom", "best", "worst"})  # without a count: a ranking, not one row
# "largest first", "from highest to lowest": an order, not a top-N
_DIRECTIONS = re.compile(r"\b(?:from\s+)?(?:(highest|largest|biggest|most)\s+(?:first|to\s+(?:lowest|smallest|least))|"
                         r"(lowest|smallest|least|fewest)\s+(?:first|to\s+(?:highest|largest|biggest|most)))\b")
DIRECTION_WORDS = {"descending": True, "desc": True, "ascending": False, "asc": False}
# shorthand people type, read as the word it stands for
ABBREVIATIONS = {"avg": "average", "num": "number", "amt": "amount", "yr": "year", "yrs": "years",
                 "mo": "month", "mos": "months", "wk": "week", "wks": "weeks", "qtr": "quarter", "rev": "revenue",
                 "w": "with", "&": "and"}
COMPARE_WORDS = frozenset({"change", "changed", "growth", "grow", "grew", "compare", "comparison", "compared",
                           "versus", "vs", "against", "difference", "delta"})
_SQL = re.compile(r"\bselect\b[\s\S]*\bfrom\b|\b(drop|truncate|alter|create)\s+(table|schema|view|database)\b|"
                  r"\b(insert\s+into|delete\s+from|update\s+\w+\s+set|union\s+(all\s+)?select)\b|;\s*\w|--|/\*")
_INSTRUCTIONS = re.compile(
    r"\b(ignore|disregard|bypass|override|forget|skip|remove|drop|disable|circumvent)\b.{0,40}"
    r"\b(instructions?|filters?|tenant|tenants|rules?|restrictions?|security|permissions?|prompt|above|previous)\b|"
    r"\b(system\s+prompt|you\s+are\s+now|act\s+as|pretend|jailbreak|admin\s+mode|developer\s+mode|sudo)\b")
_ALL_TENANTS = re.compile(r"\b(all|every|each|other|any|another)\s+(of\s+the\s+)?"
                          r"(tenants?|merchants?|customers'?\s+data)\b|\bacross\s+tenants\b")
_COMPARE_PREVIOUS = re.compile(
    r"\b(?:compared?\s+(?:to|with)|vs\.?|versus|against|relative\s+to|over|from|than|on)\s+(?:the\s+)?"
    r"(?:previous|prior|preceding)\s+(period|day|week|month|quarter|year)\b|"
    r"\b(?:(?:period|day|week|month|quarter|year)[\s-]+over[\s-]+(?:period|day|week|month|quarter|year)|"
    r"mom|yoy|wow|qoq|pop)\b|\b(?:the\s+)?(?:day|week|month|quarter|year|period)\s+before\b")


@dataclass(frozen=True)
class Filter:
    group_by: str
    values: tuple
    negated: bool
    labels: tuple[str, ...]


@dataclass
class Intent:
    metrics: list[str]
    group_by: list[str]
    filters: list[Filter]
    grain: str | None
    span: Span | None
    compare: Span | None
    order: list[tuple[str, str, bool]]  # (kind: metric|dimension|time, key, descending)
    limit: int | None
    view: str
    fuzzy: list[tuple[str, str]] = field(default_factory=list)  # (word as typed, phrase read)


class Unanswered(Exception):
    """A question not answered: refused (it must not be), or asked back (it could mean several
    things, or something the layer does not have); the closest metrics and dimensions are named."""

    def __init__(self, status: str, reason: str, message: str, metrics: list[str] | None = None,
                 dimensions: list[str] | None = None):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.metrics, self.dimensions = metrics or [], dimensions or []


class QuestionError(QueryError):
    """A request that carries no readable question (empty, too long, not text): a 400 UserError, as
    any query the REST API refuses."""


@dataclass
class _Mention:
    start: int  # token index
    end: int
    targets: list[Target]
    typed: str
    fuzzy: bool = False


def check_question(question) -> str:
    if not isinstance(question, str):
        raise QuestionError(f"question: expected a string, got {type(question).__name__}")
    text = " ".join(question.split())
    if not text:
        raise QuestionError("question: empty; ask e.g. 'revenue in Germany last month'")
    if len(question) > MAX_QUESTION_CHARS:
        raise QuestionError(f"question: {len(question)} characters, more than the {MAX_QUESTION_CHARS} a question "
                            "may have")
    if "\x00" in question:
        raise QuestionError("question: contains a NUL character")
    return text


class Reader:
    """Reads questions against one vocabulary, the values a tenant may see, and a date parser."""

    def __init__(self, vocabulary: Vocabulary, values: Phrases, dates: DateParser, tenant: str | None,
                 codes: dict[str, list[str]], foreign: set[str]):
        self.vocabulary, self.dates, self.tenant = vocabulary, dates, tenant
        self.phrases = vocabulary.phrases.merged(values)
        self.codes = codes  # group-by -> two-letter codes, matched only as typed in capitals
        self.foreign = foreign  # other tenants' ids and names (lower case), for the caller to be refused
        self._by_length: dict[int, list[str]] = {}
        for words in self.phrases.entries:
            self._by_length.setdefault(len(words), []).append(" ".join(words))

    # -- the whole reading ---------------------------------------------------------------------
    def read(self, question: str, today) -> Intent:
        text = check_question(question)
        self._refuse_instructions(text)
        lowered = " " + " ".join(ABBREVIATIONS.get(w, w) for w in words_of(text.replace("/", " "))) + " "
        lowered = lowered.replace(" vs. ", " vs ")
        lowered = _DIRECTIONS.sub(lambda m: " descending " if m.group(1) else " ascending ", lowered)
        compare_previous = bool(_COMPARE_PREVIOUS.search(lowered))
        lowered = _COMPARE_PREVIOUS.sub(" ", lowered)
        try:
            spans = self.dates.find(lowered, today, self.tenant)
        except DateError as exc:
            raise Unanswered("clarify", "date", f"I could not place a date: {exc}") from None
        masked = lowered
        for start, end, _ in reversed(spans):
            masked = masked[:start] + " @date " + masked[end:]
        original = {w.lower(): w for w in re.findall(r"[\w'\-]+", text)}
        tokens = masked.split()
        mentions, unknown, grain, top, direction, sort_marks, negations, compare_word = self._scan(tokens, original)
        return self._resolve(text, tokens, mentions, unknown, grain, top, direction, sort_marks, negations,
                             compare_previous or compare_word, [s for _, _, s in spans])

    def _refuse_instructions(self, text: str) -> None:
        lowered = text.lower()
        if _SQL.search(lowered):
            raise Unanswered("refused", "sql", "SQL is not run from questions: ask in words (e.g. 'revenue by country "
                             "last month'), or send a semantic query to /cubejs-api/v1/load.")
        if _INSTRUCTIONS.search(lowered):
            raise Unanswered("refused", "instructions", "Questions are read for metrics, dimensions, values and dates "
                             "only; instructions are not followed. Which rows you see comes from your token.")
        words = set(words_of(lowered))
        joined = " " + " ".join(words_of(lowered)) + " "
        named = sorted(f for f in self.foreign if (f in words if " " not in f else f" {f} " in joined))
        if named:
            raise Unanswered("refused", "tenant", f"The question names another tenant ({', '.join(named)}): your "
                             f"token answers for tenant {self.tenant} only.")
        if self.tenant is not None and _ALL_TENANTS.search(lowered):
            raise Unanswered("refused", "tenant", f"Your token answers for tenant {self.tenant} only, not for other "
                             "or all tenants.")

    # -- words to mentions ---------------------------------------------------------------------
    def _scan(self, tokens: list[str], original: dict[str, str]):
        mentions: list[_Mention] = []
        unknown: list[str] = []
        grain: list[str] = []
        top: list[tuple[bool, int]] = []
        direction: list[bool] = []
        sort_marks: list[int] = []  # indexes into mentions: the member after "sorted by"
        negations: list[int] = []  # mention indexes that follow a negation
        compare_word = False
        negate_next = False
        i = 0
        while i < len(tokens):
            word = tokens[i]
            if word == "@date":
                i += 1
                continue
            after_metric = bool(mentions) and mentions[-1].end == i and any(
                t.kind == "metric" for t in mentions[-1].targets)
            if word in COMPARE_WORDS and after_metric:  # "revenue growth": a comparison, not a tier named growth
                compare_word = True
                i += 1
                continue
            matched = self._exact(tokens, i, original)
            if matched is not None:
                if negate_next:
                    negations.append(len(mentions))
                    negate_next = False
                mentions.append(matched)
                i = matched.end
                continue
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            if word in ("by", "per", "each", "every", "a") and nxt in GRANULARITIES:
                grain.append(nxt)
                i += 2
                continue
            if word in ("by", "per") and nxt.rstrip("s") in GRANULARITIES and nxt.endswith("s"):
                grain.append(nxt.rstrip("s"))
                i += 2
                continue
            if word in GRAINS:
                grain.append(GRAINS[word])
                i += 1
                continue
            if word in ("sorted", "ordered", "sort", "rank", "ranked") and nxt == "by":
                sort_marks.append(len(mentions))
                i += 2
                continue
            if word in TOP_WORDS:  # "top 5", "bottom three"; a superlative alone is the one at the top
                count = _number(nxt)
                if count is not None:
                    top.append((TOP_WORDS[word], count))
                    i += 2
                else:
                    top.append((TOP_WORDS[word], None if word in RANKINGS else 1))
                    i += 1
                after = tokens[i] if i < len(tokens) else ""
                if after.rstrip("s") in GRANULARITIES and after not in GRAINS:  # "top 3 days"
                    grain.append(after.rstrip("s"))
                    i += 1
                continue
            if word in DIRECTION_WORDS:
                direction.append(DIRECTION_WORDS[word])
                i += 1
                continue
            if word in ("order", "alphabetically", "alphabetical", "ranking"):
                i += 1
                continue
            if word in NEGATIONS or (word == "other" and nxt == "than"):
                negate_next = True
                i += 2 if word == "other" else 1
                continue
            if word in COMPARE_WORDS:
                compare_word = True
                i += 1
                continue
            if word in FILLER or word in ("only", "just", "users", "customers", "people", "total"):
                i += 1
                continue
            fuzzy = self._fuzzy(tokens, i)
            if fuzzy is not None:
                if negate_next:
                    negations.append(len(mentions))
                    negate_next = False
                mentions.append(fuzzy)
                i = fuzzy.end
                continue
            unknown.append(word)
            i += 1
        return mentions, unknown, grain, top, direction, sort_marks, negations, compare_word

    def _exact(self, tokens: list[str], i: int, original: dict[str, str]) -> _Mention | None:
        for n in range(min(6, len(tokens) - i), 0, -1):
            words = tuple(tokens[i:i + n])
            if "@date" in words:
                continue
            targets = self.phrases.best(words)
            if targets:
                return _Mention(i, i + n, targets, " ".join(words))
        typed = original.get(tokens[i], tokens[i])
        if len(typed) == 2 and typed.isupper():
            targets = [Target("value", g, typed, typed) for g, codes in self.codes.items() if typed in codes]
            if targets:
                return _Mention(i, i + 1, targets, typed)
        return None

    def _fuzzy(self, tokens: list[str], i: int) -> _Mention | None:
        """The catalog phrase closest to the words at i, if within the typo distance (longest first)."""
        for n in range(min(3, len(tokens) - i), 0, -1):
            words = tokens[i:i + n]
            if "@date" in words or words[-1] in FILLER or words[0] in FILLER:
                continue
            typed = " ".join(words)
            if sum(len(w) for w in words) < FUZZY_MIN_LETTERS:
                continue
            found = process.extract(typed, self._by_length.get(n, []), scorer=DamerauLevenshtein.normalized_similarity,
                                    score_cutoff=FUZZY_CUTOFF, limit=3)
            if not found:
                continue
            best = found[0][1]
            targets = []
            for phrase, score, _ in found:
                if score >= best - 1e-9:
                    targets += [t for t in self.phrases.best(tuple(phrase.split())) if t not in targets]
            return _Mention(i, i + n, targets, typed, fuzzy=True)
        return None

    # -- mentions to an intent -------------------------------------------------------------------
    def _resolve(self, text, tokens, mentions, unknown, grains, top, direction, sort_marks, negations, compare,
                 spans) -> Intent:
        vocab = self.vocabulary
        metric_mentions = [m for m in mentions if any(t.kind == "metric" for t in m.targets)]
        if unknown:
            raise Unanswered("clarify", "unknown_words", _unknown_message(unknown, text),
                             self._closest_metrics(text), self._closest_dimensions(text))
        if not metric_mentions:
            raise Unanswered("clarify", "no_metric", "No governed metric is named in the question. Ask for one of "
                             "the metrics below (GET /cubejs-api/v1/meta lists them all).",
                             self._closest_metrics(text), self._closest_dimensions(text))
        metrics: list[str] = []
        for mention in metric_mentions:
            names = [t.key for t in mention.targets if t.kind == "metric"]
            if len(names) > 1:
                raise Unanswered("clarify", "ambiguous_metric", f"{mention.typed!r} could be several metrics: "
                                 f"{_names(names, vocab)}. Which one?", names)
            if names[0] not in metrics:
                metrics.append(names[0])
        views = [v for v in vocab.metrics[metrics[0]].views
                 if all(v in vocab.metrics[m].views for m in metrics)]
        if not views:
            raise Unanswered("clarify", "metrics_apart", f"{_names(metrics, vocab)} are not measured together (no "
                             "view holds them all): ask for them one at a time.", metrics)

        dimension_mentions = [m for m in mentions if m not in metric_mentions]
        group_by: list[str] = []
        filters: dict[tuple[str, bool], list[Target]] = {}
        chosen_view = None
        for view in views:
            if all(any(view in vocab.dimensions[t.key].views for t in m.targets) for m in dimension_mentions):
                chosen_view = view
                break
        if chosen_view is None:
            missing = next(m for m in dimension_mentions
                           if not any(views[0] in vocab.dimensions[t.key].views for t in m.targets))
            can = sorted({d for v in views for d, info in vocab.dimensions.items() if v in info.views})
            raise Unanswered("clarify", "dimension_not_available",
                             f"{_names(metrics, vocab)} cannot be cut by {missing.typed!r}. "
                             f"It can be cut by: {', '.join(vocab.dimensions[d].title for d in can)}.",
                             metrics, can)
        for mention in dimension_mentions:
            targets = [t for t in mention.targets if chosen_view in vocab.dimensions[t.key].views]
            kinds = {t.kind for t in targets}
            keys = sorted({t.key for t in targets})
            if len(keys) > 1:
                # "country Germany": a dimension word beside a value narrows the value to that dimension
                neighbours = {t.key for m in dimension_mentions if abs(m.start - mention.end) <= 1 or
                              abs(mention.start - m.end) <= 1 for t in m.targets if m is not mention}
                narrowed = [t for t in targets if t.key in neighbours]
                if len({t.key for t in narrowed}) == 1:
                    targets, keys = narrowed, [narrowed[0].key]
                else:
                    raise Unanswered("clarify", "ambiguous_dimension",
                                     f"{mention.typed!r} could mean {_dims(keys, vocab)}. Which one?", metrics, keys)
            if "value" in kinds:
                negated = mentions.index(mention) in negations
                filters.setdefault((keys[0], negated), []).extend(t for t in targets if t.kind == "value")
            else:  # "country Germany", "paid channels", "apparel tenants": the word qualifies a value
                filtered_here = any(
                    abs(m.start - mention.end) <= 1 or abs(mention.start - m.end) <= 1
                    for m in dimension_mentions if m is not mention and
                    any(t.kind == "value" and (t.key == keys[0] or t.key.startswith(f"{keys[0]}__"))
                        for t in m.targets))
                if not filtered_here and keys[0] not in group_by:
                    group_by.append(keys[0])
        view = vocab.catalog.views[chosen_view]

        # grain and dates
        if len(set(grains)) > 1:
            raise Unanswered("clarify", "ambiguous_grain", f"Several grains are asked for ({', '.join(grains)}): "
                             "which one?", metrics)
        grain = grains[0] if grains else None
        if grain is not None and grain not in view.granularities:
            raise Unanswered("refused", "grain", f"{_names(metrics, vocab)} is not kept by {grain}: the finest grain "
                             f"it has is {view.granularities[0]} (ask by {', '.join(view.granularities)}).", metrics)
        span, compare_span = None, None
        if len(spans) > 2:
            raise Unanswered("clarify", "dates", "The question names more than two date ranges: which one?", metrics)
        if len(spans) == 2:
            connector = set(tokens[tokens.index("@date") + 1:]) & {"vs", "versus", "against", "compared", "than",
                                                                  "and"}
            if not (connector or compare):
                raise Unanswered("clarify", "dates", f"Two date ranges ({spans[0].describe()}, {spans[1].describe()}):"
                                 " which one, or compare them ('... vs ...')?", metrics)
            span, compare_span = spans
        elif spans:
            span = spans[0]
            if compare:
                compare_span = span.previous()
        elif compare:
            raise Unanswered("clarify", "compare_needs_range", "Compared with which period? Name the range, e.g. "
                             "'last month compared with the previous month'.", metrics)

        # order and top-N
        limit, order = None, []
        sort_targets = [mentions[i] for i in sort_marks if i < len(mentions)]
        descending = direction[-1] if direction else True
        if top:
            if not group_by and grain is None:
                offered = [d for d in vocab.dimensions if chosen_view in vocab.dimensions[d].views]
                raise Unanswered("clarify", "top_needs_dimension", "Top or bottom of what? Name a dimension, e.g. "
                                 "'top 5 countries by revenue'.", metrics, offered)
            descending, limit = top[-1]
            order.append(("metric", metrics[0], descending))
        elif sort_targets:
            for target_mention in sort_targets:  # a metric sorts largest first, a dimension A to Z, unless told
                target = target_mention.targets[0]
                kind = "metric" if target.kind == "metric" else "dimension"
                order.append((kind, target.key, direction[-1] if direction else kind == "metric"))
        else:
            if grain is not None:
                order.append(("time", grain, False))
            if group_by:
                order.append(("metric", metrics[0], descending))
        return Intent(metrics, group_by, [Filter(key, tuple(dict.fromkeys(t.value for t in targets)), negated,
                                                 tuple(dict.fromkeys(t.label for t in targets)))
                                          for (key, negated), targets in filters.items()],
                      grain, span, compare_span, order, limit, chosen_view,
                      [(m.typed, _label(m.targets[0])) for m in mentions if m.fuzzy])

    # -- what to offer when nothing fits --------------------------------------------------------
    def _closest_metrics(self, text: str, n: int = 5) -> list[str]:
        return _closest(text, {name: [name.replace("_", " "), info.title.lower()] for name, info in
                               self.vocabulary.metrics.items()}, n)

    def _closest_dimensions(self, text: str, n: int = 5) -> list[str]:
        return _closest(text, {g: [g.replace("__", " ").replace("_", " ")] for g in self.vocabulary.dimensions}, n)


def _closest(text: str, names: dict[str, list[str]], n: int) -> list[str]:
    words = [w for w in words_of(text) if w not in FILLER and len(w) > 2]
    scored = []
    for key, phrases in names.items():
        score = max((DamerauLevenshtein.normalized_similarity(w, p_word) for w in words for phrase in phrases
                     for p_word in phrase.split()), default=0.0)
        scored.append((-score, key))
    return [key for _, key in sorted(scored)[:n]]


def _number(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    return NUMBERS.get(word) if word not in ("a", "an") else None


def _names(metrics: list[str], vocab: Vocabulary) -> str:
    return " and ".join(f"{vocab.metrics[m].title} ({m})" for m in metrics)


def _dims(keys: list[str], vocab: Vocabulary) -> str:
    return " or ".join(f"{vocab.dimensions[k].title} ({k})" for k in keys)


def _label(target: Target) -> str:
    return target.label or target.key


def _unknown_message(unknown: list[str], text: str) -> str:
    latin = all(ord(c) < 0x250 for c in text)
    words = ", ".join(repr(w) for w in dict.fromkeys(unknown))
    if not latin or (len(unknown) >= 3 and 2 * len(unknown) > len(words_of(text))):
        return (f"I read questions in English, over the governed metrics only, and could not read {words}. "
                "Ask e.g. 'revenue in Germany last month'.")
    return (f"I do not know {words}: it is not a metric, dimension, value or date the governed layer has. "
            "Rephrase with the metrics and dimensions below.")
