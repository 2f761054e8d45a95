"""The words a question may use, all taken from the governed definitions and the published data.

- Metrics: their name ("average order value"), their label ("Average order value"; "Active users
  (daily)" also as "daily active users"), and the `meta.synonyms` of their yml ("AOV"). A name
  outranks a synonym, which outranks a label, so "conversion rate" is `conversion_rate` although the
  experiment's twin is labelled "Conversion rate (experiment)".
- Dimensions: their name ("country", "tenant tier") with plurals, and their `meta.synonyms`.
- Values: each enumerable string dimension's real values, for the caller's tenant only, read through
  the same query path as the REST API (so tenancy applies), cached per data version. Country codes
  are also known by their ISO 3166 names (pycountry): "Germany" is `DE`. Boolean dimensions named
  `is_<word>` answer to "<word>" (true) and "non-<word>"/"not <word>" (false).

Nothing here is a list of the metrics: a metric added to the yml is understood without code.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pycountry

from semantic.members import TIME_DIMENSION, Catalog

SYNONYMS = "synonyms"
# values read per dimension; a dimension with more is not matched by value (ids, free text)
MAX_VALUES = 500
# priority of a phrase: how surely it names its target
NAME, SYNONYM, LABEL, VALUE_ALIAS = 3, 2, 1, 1


@dataclass(frozen=True)
class Target:
    kind: str  # metric, dimension, value
    key: str  # metric name, or a dimension's group-by name
    value: object = None  # a value's value (a string, or a boolean)
    label: str = ""  # how the answer names it ("DE (Germany)")


@dataclass
class Phrases:
    """Phrase (tuple of words) -> [(priority, target)]."""

    entries: dict[tuple[str, ...], list[tuple[int, Target]]] = field(default_factory=dict)

    def add(self, text: str, priority: int, target: Target) -> None:
        words = tuple(words_of(text))
        if not words:
            return
        found = self.entries.setdefault(words, [])
        for i, (p, t) in enumerate(found):
            if t == target:
                found[i] = (max(p, priority), t)
                return
        found.append((priority, target))

    def best(self, words: tuple[str, ...]) -> list[Target]:
        """The targets a phrase names at its highest priority (several: the phrase is ambiguous)."""
        found = self.entries.get(words)
        if not found:
            return []
        top = max(p for p, _ in found)
        return [t for p, t in found if p == top]

    def merged(self, other: Phrases) -> Phrases:
        merged = Phrases({k: list(v) for k, v in self.entries.items()})
        for words, found in other.entries.items():
            for priority, target in found:
                merged.entries.setdefault(words, [])
                if (priority, target) not in merged.entries[words]:
                    merged.entries[words].append((priority, target))
        return merged


def words_of(text: str) -> list[str]:
    """Lower-case words: letters, digits, inner hyphens, apostrophes and underscores kept."""
    text = text.lower().replace("’", "'").replace("_", " ")
    return [w.strip("'-") for w in re.findall(r"[\w'\-]+", text) if w.strip("'-")]


def plural(word: str) -> str:
    if word.endswith("y") and not word.endswith(("ay", "ey", "oy")):
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    title: str
    description: str
    views: tuple[str, ...]  # the views it is in, its home first
    format: str | None = None
    cumulative: bool = False


@dataclass(frozen=True)
class DimensionInfo:
    group_by: str
    title: str
    description: str
    type: str
    views: tuple[str, ...]


class Vocabulary:
    """What the catalog offers, with the phrases that name it (values are added per tenant)."""

    def __init__(self, catalog: Catalog, metric_meta: dict[str, dict], dimension_meta: dict[str, dict]):
        self.catalog = catalog
        self.metrics: dict[str, MetricInfo] = {}
        self.dimensions: dict[str, DimensionInfo] = {}
        self.phrases = Phrases()
        keys = {v.primary_entity for v in catalog.views.values() if v.primary_entity}
        self.unenumerable = frozenset(keys)  # a fact's own key: too many values to match by
        for view in catalog.views.values():
            for measure in view.measures.values():
                declared = metric_meta.get(measure.metric, {}).get("views")
                info = self.metrics.get(measure.metric)
                views = (*info.views, view.name) if info else (view.name,)
                order = list(declared) if isinstance(declared, list) else []
                views = tuple(sorted(set(views), key=lambda v: (order.index(v) if v in order else len(order), v)))
                self.metrics[measure.metric] = MetricInfo(measure.metric, measure.title, measure.description, views,
                                                          measure.format, measure.cumulative)
            for dim in view.dimensions.values():
                if dim.group_by == TIME_DIMENSION:
                    continue
                info = self.dimensions.get(dim.group_by)
                self.dimensions[dim.group_by] = DimensionInfo(
                    dim.group_by, _dimension_title(dim.group_by), dim.description, dim.type,
                    (*info.views, view.name) if info else (view.name,))
        for name, info in self.metrics.items():
            target = Target("metric", name, label=info.title)
            self.phrases.add(name, NAME, target)
            base = re.sub(r"\s*\(.*?\)", "", info.title)
            self.phrases.add(base, LABEL, target)
            for inner in re.findall(r"\((.*?)\)", info.title):
                self.phrases.add(f"{inner} {base}", SYNONYM, target)
            for synonym in _synonyms(metric_meta.get(name, {}), f"metric {name}"):
                self.phrases.add(synonym, SYNONYM, target)
        for group_by, info in self.dimensions.items():
            target = Target("dimension", group_by, label=info.title)
            last = group_by.split("__")[-1]
            names = {last, group_by.replace("__", " ")}
            entity = group_by.split("__")[-2] if "__" in group_by else ""
            if entity and last.startswith(f"{entity}_"):
                names.add(last[len(entity) + 1:])  # event_country -> country (then ambiguous with the user's)
            if group_by in self.unenumerable:  # a fact's own key ("by order id"): never a word's guess
                names = {f"{group_by.removesuffix('_id').replace('_', ' ')} id"}
            for name in names:
                if info.type == "boolean":
                    continue  # named by their values (paid / non-paid)
                rank = SYNONYM if name == group_by.replace("__", " ") and "__" in group_by else NAME
                self.phrases.add(name, rank, target)
                words = words_of(name)
                self.phrases.add(" ".join([*words[:-1], plural(words[-1])]), rank, target)
            for synonym in _synonyms(dimension_meta.get(last, {}), f"dimension {last}"):
                self.phrases.add(synonym, SYNONYM, target)
                self.phrases.add(plural(synonym), SYNONYM, target)
            if info.type == "boolean" and last.startswith("is_"):
                word = last[3:].replace("_", " ")
                self.phrases.add(word, NAME, Target("value", group_by, True, f"{word}"))
                for negative in (f"non {word}", f"non-{word}", f"not {word}", f"un{word}"):
                    self.phrases.add(negative, NAME, Target("value", group_by, False, f"not {word}"))

    def enumerable(self) -> list[str]:
        """The string dimensions whose values are matched: not a fact's own key."""
        return [g for g, d in self.dimensions.items() if d.type == "string" and g not in self.unenumerable]

    def value_phrases(self, values: dict[str, list[str]]) -> Phrases:
        """Phrases for the values of each dimension (`values`: group-by -> its values)."""
        phrases = Phrases()
        for group_by, found in values.items():
            codes = all(isinstance(v, str) and len(v) == 2 and v.isupper() for v in found) and found
            for value in found:
                if not isinstance(value, str) or not value.strip():
                    continue
                label = value
                if codes:
                    country = pycountry.countries.get(alpha_2=value)
                    if country is not None:
                        label = f"{value} ({getattr(country, 'common_name', country.name)})"
                        for alias in {country.name, getattr(country, "common_name", country.name),
                                      getattr(country, "official_name", country.name), *COUNTRY_ALIASES.get(value, ())}:
                            phrases.add(alias, VALUE_ALIAS, Target("value", group_by, value, label))
                    continue  # two-letter codes themselves are matched case-sensitively (US, IN)
                phrases.add(value, NAME, Target("value", group_by, value, label))
                if "_" in value:
                    phrases.add(value.replace("_", "-"), NAME, Target("value", group_by, value, label))
        return phrases


# What people call some countries that ISO's names do not say.
COUNTRY_ALIASES = {"US": ("usa", "america", "united states"), "GB": ("uk", "britain", "great britain", "england")}


def _dimension_title(group_by: str) -> str:
    """user__country -> "user country", event__event_country -> "event country", tenant -> "tenant"."""
    parts = group_by.split("__")
    if len(parts) == 1:
        return parts[0].replace("_", " ")
    entity, last = parts[-2].removesuffix("_id"), parts[-1]
    return (last if last.startswith(f"{entity}_") else f"{entity}_{last}").replace("_", " ")


def _synonyms(meta: dict, where: str) -> list[str]:
    found = meta.get(SYNONYMS, [])
    if isinstance(found, str):
        found = [found]
    if not isinstance(found, list) or not all(isinstance(s, str) for s in found):
        raise ValueError(f"{where}: meta.synonyms must be a list of strings, got {found!r}")
    return found


class ValueCache:
    """Each dimension's values per (data version, tenant), read once with `read(group_by) -> values`."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str | None], dict[str, list[str]]] = {}

    def get(self, version: str, tenant: str | None, group_bys: list[str],
            read: Callable[[str], list[str] | None]) -> dict[str, list[str]]:
        key = (version, tenant)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        values = {}
        for group_by in group_bys:
            found = read(group_by)
            if found is not None and len(found) < MAX_VALUES:
                values[group_by] = found
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] == version}  # older versions go
            self._cache[key] = values
        return values
