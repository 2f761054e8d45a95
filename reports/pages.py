"""The Evidence pages as Python reads them: routes, named SQL queries, filters and their defaults.

The site build checks page queries with it before Evidence runs, and the exports run the same
queries in DuckDB over the site's own Parquet files, so an exported dataset is what the page shows.
Evidence templates a query with `${inputs.<filter>.value}` and `${<other query>}`; `resolve` does the
same with the values it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent
PAGES_DIR = PROJECT_DIR / "pages"
PARTIALS_DIR = PROJECT_DIR / "partials"
SQL_BLOCK = re.compile(r"^```sql[ \t]+(\w+)[ \t]*\n(.*?)^```", re.S | re.M)
PARTIAL = re.compile(r'\{@partial\s+"([^"]+)"\s*\}')
TEMPLATE = re.compile(r"\$\{\s*([^}]*?)\s*\}")
INPUT_VALUE = re.compile(r"inputs\.(\w+)\.value$")
DROPDOWN = re.compile(r"<Dropdown\b([^>]*)>")
BIG_VALUE = re.compile(r"<BigValue\b([^>]*)/?>")
ATTRIBUTE = re.compile(r"""(\w+)=(?:"([^"]*)"|'([^']*)'|\{([^}]*)\}|([^\s/>]+))""")


class PageError(Exception):
    """A page cannot be read or one of its queries cannot be templated; the message names both."""


@dataclass(frozen=True)
class Headline:
    """A `<BigValue>`: the first row's `value` of query `data`, and its change in `comparison`."""

    title: str
    data: str
    value: str
    fmt: str = ""
    comparison: str = ""
    comparison_fmt: str = ""
    comparison_title: str = ""


@dataclass(frozen=True)
class Page:
    path: Path
    file: str  # as errors name it: `pages/index.md`
    route: str
    title: str
    queries: dict[str, str]  # every named query the page runs, its partials' first
    own_queries: tuple[str, ...]  # the page's datasets: its queries, not its partials' (filter options)
    defaults: dict[str, str]  # each filter's default value
    headlines: tuple[Headline, ...]  # the page's BigValue components, in order


    @property
    def name(self) -> str:
        """A file-system name for the page: `index`, `engagement`, ..."""
        return self.route.strip("/").replace("/", "-") or "index"

    def resolve(self, query: str, inputs: dict[str, str] | None = None, unset: str | None = None) -> str:
        """The query's SQL as Evidence runs it: filters replaced by their values (the defaults unless
        `inputs` says otherwise; `unset` for a filter with neither, else that is an error),
        references to the page's other queries by their SQL."""
        values = {**self.defaults, **(inputs or {})}
        return self._resolve(query, values, unset, seen=())

    def _resolve(self, query: str, values: dict[str, str], unset: str | None, seen: tuple[str, ...]) -> str:
        if query in seen:
            raise PageError(f"{self.where(query)}: queries refer to each other in a cycle ({' -> '.join(seen)})")

        def substitute(match: re.Match) -> str:
            expression = match.group(1)
            if expression in self.queries:
                return f"({self._resolve(expression, values, unset, (*seen, query))})"
            filter_value = INPUT_VALUE.match(expression)
            if filter_value is None:
                raise PageError(f"{self.where(query)}: cannot template `${{{expression}}}` (use "
                                "`${inputs.<filter>.value}` or `${<query>}`)")
            name = filter_value.group(1)
            if name not in values and unset is not None:
                return unset
            if name not in values:
                raise PageError(f"{self.where(query)}: filter `{name}` has no value (give its Dropdown a "
                                "defaultValue)")
            return values[name].replace("'", "''")

        return TEMPLATE.sub(substitute, self.queries[query])

    def where(self, query: str) -> str:
        return f"{self.file}, query `{query}`"


def route_of(path: Path, pages_dir: Path = PAGES_DIR) -> str:
    """`index.md` is `/`, `engagement.md` is `/engagement`."""
    route = "/" + path.relative_to(pages_dir).with_suffix("").as_posix()
    return route.removesuffix("index").rstrip("/") or "/"


def read(path: Path, pages_dir: Path = PAGES_DIR) -> Page:
    text = path.read_text()
    file = path.relative_to(pages_dir.parent).as_posix()
    missing = [name for name in PARTIAL.findall(text) if not (PARTIALS_DIR / name).exists()]
    if missing:
        raise PageError(f"{file}: partial {missing[0]} does not exist in {PARTIALS_DIR.name}/")
    own = dict(SQL_BLOCK.findall(text))
    expanded = PARTIAL.sub(lambda m: (PARTIALS_DIR / m.group(1)).read_text(), text)
    title = re.search(r"^title:\s*(.+)$", text, re.M)
    return Page(path=path, file=file, route=route_of(path, pages_dir),
                title=title.group(1).strip() if title else path.stem, queries=dict(SQL_BLOCK.findall(expanded)),
                own_queries=tuple(own), defaults=_defaults(expanded), headlines=_headlines(text))


def all_pages(pages_dir: Path = PAGES_DIR) -> list[Page]:
    return [read(path, pages_dir) for path in sorted(pages_dir.rglob("*.md"))]


def by_route(route: str, pages_dir: Path = PAGES_DIR) -> Page:
    for page in all_pages(pages_dir):
        if page.route == route:
            return page
    known = ", ".join(page.route for page in all_pages(pages_dir))
    raise PageError(f"no page has the route {route!r}; the pages are: {known}")


def _defaults(text: str) -> dict[str, str]:
    """Each Dropdown's `name` and `defaultValue`."""
    defaults = {}
    for attributes in DROPDOWN.findall(text):
        values = _attributes(attributes)
        if values.get("name") and "defaultValue" in values:
            defaults[values["name"]] = values["defaultValue"]
    return defaults


def _headlines(text: str) -> tuple[Headline, ...]:
    found = []
    for attributes in BIG_VALUE.findall(text):
        values = _attributes(attributes)
        found.append(Headline(title=values.get("title") or values.get("value", ""), data=values.get("data", ""),
                              value=values.get("value", ""), fmt=values.get("fmt", ""),
                              comparison=values.get("comparison", ""),
                              comparison_fmt=values.get("comparisonFmt", ""),
                              comparison_title=values.get("comparisonTitle", "")))
    return tuple(found)


def _attributes(tag: str) -> dict[str, str]:
    """A component's attributes: `a="x"`, `a='x'`, `a={x}` and `a=x` all give `x`."""
    return {key: next((v for v in rest if v), "") for key, *rest in ATTRIBUTE.findall(tag)}
