"""Date phrases of a question, resolved to a range of whole days against "today".

The words people use ("last month", "year to date", "the past two weeks", "since Black Friday",
"in March", "Q3 2026", "between 2026-10-01 and 2026-10-15") become a `Span`: the first and last day,
both included, and the words that said it (the answer's sentence repeats them). Cube's relative
ranges are the model: "last month" and "last 3 months" are whole calendar months before this one,
"this month" the whole month (days to come have no facts, forecasts excepted); "last N days" and
"the past N weeks" count days back from yesterday, as Cube's "last N days" does.

Named days come from a `NamedDays` calendar, pluggable: `RetailCalendar` computes the US retail
days the sample's seasonality uses (Black Friday, Cyber Monday, Christmas...) with the sample
generator's own rule, and `TableCalendar` reads rows shaped like the events calendar seed
(`marts.events_calendar`: event_date, event_id, event_name, tenant_id) when the published data has
it; `Calendars` asks several in order. "Since Black Friday" is the most recent one up to today.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from ingestion.sample_data.calendar import us_holidays

MONTHS = {name: i + 1 for i, name in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
     "november", "december"))}
MONTHS.update({name[:3]: number for name, number in list(MONTHS.items())})
MONTHS["sept"] = 9
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "twenty": 20,
           "thirty": 30, "a": 1, "an": 1}
# the longest range a question may ask for: a typo'd "last 9999 years" is refused, not run
MAX_DAYS = 20 * 366


class DateError(ValueError):
    """A date phrase that names no range (a named day the calendar does not know, an end before a start)."""


@dataclass(frozen=True)
class Span:
    first: date
    last: date
    words: str  # how the question said it ("last month")
    unit: str | None = None  # the calendar period it is, if one (comparisons shift by it)
    count: int = 1

    def as_cube(self) -> list[str]:
        return [self.first.isoformat(), self.last.isoformat()]

    def previous(self) -> Span:
        """The period to compare with: the one before, by the calendar step the range was said in
        (the month before a month, the same days a year earlier for year to date), else the same
        number of days just before."""
        if self.unit in ("month", "quarter", "year"):
            months = {"month": 1, "quarter": 3, "year": 12}[self.unit] * self.count
            return Span(_shift_months(self.first, -months), _shift_months(self.last, -months, end=True),
                        f"the {self.unit} before" if self.count == 1 else f"the {self.count} {self.unit}s before",
                        self.unit, self.count)
        days = 7 * self.count if self.unit == "week" else (self.last - self.first).days + 1
        return Span(self.first - timedelta(days=days), self.last - timedelta(days=days),
                    "the week before" if self.unit == "week" else
                    "the day before" if days == 1 else f"the {days} days before", self.unit, self.count)

    def describe(self) -> str:
        if self.first == self.last:
            return f"{self.words} ({self.first.isoformat()})"
        return f"{self.words} ({self.first.isoformat()} to {self.last.isoformat()})"


class NamedDays(Protocol):
    """A calendar of named days: the phrases it knows, and the days each falls on."""

    def phrases(self) -> dict[str, str]:
        """Lower-case phrase -> the day's key ("black friday" -> "black_friday")."""

    def days(self, key: str, tenant: str | None) -> list[date]:
        """Every day the key falls on that this calendar knows, for the tenant (None: every tenant)."""


class RetailCalendar:
    """US retail and public holidays computed by rule (the sample's seasonality uses the same rule),
    for any year: no table needed."""

    ALIASES = {"black friday": "black_friday", "cyber monday": "cyber_monday", "thanksgiving": "thanksgiving",
               "christmas": "christmas", "christmas day": "christmas", "xmas": "christmas",
               "new year": "new_year", "new years day": "new_year", "new year's day": "new_year",
               "independence day": "independence_day", "fourth of july": "independence_day",
               "july 4th": "independence_day", "labor day": "labor_day", "memorial day": "memorial_day",
               "christmas eve": "christmas_eve", "new years eve": "new_years_eve", "new year's eve": "new_years_eve"}

    def phrases(self) -> dict[str, str]:
        return dict(self.ALIASES)

    def days(self, key: str, tenant: str | None) -> list[date]:
        found = []
        for year in range(1990, 2101):
            by_name = {name: day for day, name in us_holidays(year).items()}
            by_name["christmas_eve"] = date(year, 12, 24)
            by_name["new_years_eve"] = date(year, 12, 31)
            if key in by_name:
                found.append(by_name[key])
        return found


class TableCalendar:
    """Named days from rows shaped like the events calendar seed: (event_date, event_id, event_name,
    tenant_id); a row without tenant applies to every tenant, a tenant's row to that tenant only."""

    def __init__(self, rows: Iterable[Sequence]):
        self._rows: list[tuple[date, str, str, str | None]] = []
        for day, key, name, tenant in rows:
            parsed = day if isinstance(day, date) else date.fromisoformat(str(day).strip())
            self._rows.append((parsed, str(key), str(name), tenant or None))

    def phrases(self) -> dict[str, str]:
        found = {}
        for _, key, name, _ in self._rows:
            found[_plain(name)] = key
            found[key.replace("_", " ")] = key
        return found

    def days(self, key: str, tenant: str | None) -> list[date]:
        return sorted(d for d, k, _, t in self._rows if k == key and (t is None or tenant is None or t == tenant))


class Calendars:
    """Several calendars, asked in order: a day the first knows is taken from it."""

    def __init__(self, *calendars: NamedDays):
        self.calendars = calendars

    def phrases(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for calendar in reversed(self.calendars):
            found.update(calendar.phrases())
        return found

    def days(self, key: str, tenant: str | None) -> list[date]:
        for calendar in self.calendars:
            if key in calendar.phrases().values():
                days = calendar.days(key, tenant)
                if days:
                    return days
        return []


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def _add_months(day: date, months: int) -> date:
    """The first day of the month `months` after the month of `day`."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _shift_months(day: date, months: int, end: bool = False) -> date:
    """The same day `months` later (earlier if negative), clamped to the month; a month's last day
    stays the last day when `end`."""
    first = _add_months(day, months)
    month_end = _add_months(first, 1) - timedelta(days=1)
    if end and day == _add_months(day, 1) - timedelta(days=1):
        return month_end
    return first.replace(day=min(day.day, month_end.day))


def _period(today: date, unit: str, shift: int) -> tuple[date, date]:
    """The calendar period `shift` periods from the one holding today (0: this one)."""
    if unit == "day":
        day = today + timedelta(days=shift)
        return day, day
    if unit == "week":
        start = today - timedelta(days=today.weekday()) + timedelta(weeks=shift)
        return start, start + timedelta(days=6)
    months = {"month": 1, "quarter": 3, "year": 12}[unit]
    first_month = {"month": today.month, "quarter": (today.month - 1) // 3 * 3 + 1, "year": 1}[unit]
    start = _add_months(date(today.year, first_month, 1), shift * months)
    return start, _add_months(start, months) - timedelta(days=1)


def _count(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    return NUMBERS.get(word)


_NUM = r"(\d{1,4}|" + "|".join(sorted(NUMBERS, key=len, reverse=True)) + ")"
_UNIT = r"(day|week|month|quarter|year)s?"
_MONTH = r"(" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")"
_ISO = r"(\d{4}-\d{2}-\d{2})"


class DateParser:
    """Finds the date phrases of a question (normalised: lower case, single spaces) and resolves them."""

    def __init__(self, calendar: NamedDays | None = None):
        self.calendar = calendar or RetailCalendar()
        named = sorted(self.calendar.phrases(), key=len, reverse=True)
        self._named = r"(" + "|".join(re.escape(n) for n in named) + r")" if named else r"(?!x)x"
        day = rf"(?:{_ISO}|{self._named}|{_MONTH}(?:\s+(\d{{4}}))?|(\d{{4}}))"
        self.patterns: list[tuple[re.Pattern, str]] = [(re.compile(rf"\b{p}\b"), kind) for p, kind in [
            (rf"(?:between|from)\s+{day}\s+(?:and|to|until|through|till)\s+{day}", "between"),
            (rf"since\s+(?:the\s+)?(?:start\s+of\s+|beginning\s+of\s+)?(last|this)\s+{_UNIT}", "since_period"),
            (rf"since\s+(?:the\s+)?{day}", "since"),
            (r"(year|month|quarter|week)\s+to\s+date|\b(ytd|mtd|qtd|wtd)", "to_date"),
            (r"so\s+far\s+this\s+(year|month|quarter|week)", "so_far"),
            (r"(?:at\s+|by\s+)?(?:the\s+)?end\s+of\s+(?:the\s+)?(this|last|previous|current)\s+"
             r"(week|month|quarter|year)", "end_of"),
            (rf"(?:in\s+|over\s+|for\s+|during\s+)?(?:the\s+)?(?:last|past|previous|trailing|prior)\s+{_NUM}\s+{_UNIT}",
             "last_n"),
            (r"(?:in\s+|over\s+|for\s+|during\s+)?(?:the\s+)?(this|current|last|previous|past|prior)\s+"
             r"(day|week|month|quarter|year)", "period"),
            (rf"(?:in\s+|over\s+|for\s+|during\s+)?(?:the\s+)?next\s+{_NUM}\s+{_UNIT}", "next_n"),
            (r"(?:in\s+|over\s+|for\s+|during\s+)?(?:the\s+)?(next|coming)\s+(day|week|month|quarter|year)", "next"),
            (r"(today|yesterday|tomorrow)", "day_word"),
            (r"(?:in\s+|during\s+)?q([1-4])(?:\s+(\d{4}))?", "quarter"),
            (rf"(?:in\s+|on\s+|during\s+|for\s+)?{_ISO}", "iso"),
            (rf"(?:in\s+|during\s+|for\s+)?{_MONTH}\s+(\d{{4}})", "month_year"),
            (r"(?:in\s+|during\s+)(\d{4})", "year"),
            (rf"(?:on\s+|during\s+|for\s+)?{self._named}", "named"),
            (rf"(?:in\s+|during\s+|for\s+){_MONTH}", "month"),
        ]]

    def find(self, text: str, today: date, tenant: str | None) -> list[tuple[int, int, Span]]:
        """Every date phrase in `text`, as (start, end, span), left to right, not overlapping."""
        found: list[tuple[int, int, Span]] = []
        taken: list[tuple[int, int]] = []
        for pattern, kind in self.patterns:
            for match in pattern.finditer(text):
                if any(match.start() < e and s < match.end() for s, e in taken):
                    continue
                span = self._resolve(kind, match, today, tenant)
                if span is None:
                    continue
                taken.append((match.start(), match.end()))
                found.append((match.start(), match.end(), span))
        return sorted(found, key=lambda f: f[0])

    def _resolve(self, kind: str, m: re.Match, today: date, tenant: str | None) -> Span | None:
        words = m.group(0).strip()
        for prefix in ("in the ", "over the ", "for the ", "during the ", "the ", "in ", "over ", "for ",
                       "during ", "on "):
            words = words.removeprefix(prefix)
        if kind == "period":
            which, unit = m.group(1), m.group(2)
            shift = 0 if which in ("this", "current") else -1
            first, last = _period(today, unit, shift)
            return Span(first, last, words, unit)
        if kind == "last_n":
            n, unit = _count(m.group(1)), m.group(2)
            if n is None or n < 1:
                return None
            if unit in ("day", "week"):
                days = n * (7 if unit == "week" else 1)
                self._check(days, words)
                return Span(today - timedelta(days=days), today - timedelta(days=1), words, None, n)
            months = {"month": 1, "quarter": 3, "year": 12}[unit] * n
            self._check(months * 31, words)
            first, _ = _period(today, unit, -n)
            this, _ = _period(today, unit, 0)
            return Span(first, this - timedelta(days=1), words, unit, n)
        if kind == "end_of":
            _, last = _period(today, m.group(2), 0 if m.group(1) in ("this", "current") else -1)
            return Span(last, last, words, "day")
        if kind == "next":
            first, last = _period(today, m.group(2), 1)
            return Span(first, last, words, m.group(2))
        if kind == "next_n":
            n, unit = _count(m.group(1)), m.group(2)
            if n is None or n < 1:
                return None
            first, _ = _period(today, unit, 1)
            _, last = _period(today, unit, n)
            self._check((last - first).days, words)
            return Span(first, last, words, unit if unit != "day" else None, n)
        if kind == "day_word":
            day = today + timedelta(days={"today": 0, "yesterday": -1, "tomorrow": 1}[m.group(1)])
            return Span(day, day, words, "day")
        if kind in ("to_date", "so_far"):
            unit = m.group(1) or {"ytd": "year", "mtd": "month", "qtd": "quarter", "wtd": "week"}.get(m.group(2) or "")
            first, _ = _period(today, unit, 0)
            return Span(first, today, words, unit)
        if kind == "since_period":
            first, _ = _period(today, m.group(2), 0 if m.group(1) == "this" else -1)
            return Span(first, today, words, None)
        if kind == "since":
            first = self._day(m.groups()[0:5], today, tenant, words, start=True)
            if first > today:
                raise DateError(f"{words!r}: {first.isoformat()} is after today ({today.isoformat()})")
            return Span(first, today, words, None)
        if kind == "between":
            groups = m.groups()
            first = self._day(groups[0:5], today, tenant, words, start=True)
            last = self._day(groups[5:10], today, tenant, words, start=False)
            if last < first:
                raise DateError(f"{words!r}: the range ends ({last.isoformat()}) before it starts "
                                f"({first.isoformat()})")
            self._check((last - first).days, words)
            return Span(first, last, words, None)
        if kind == "quarter":
            q, year = int(m.group(1)), int(m.group(2)) if m.group(2) else None
            first = date(year or today.year, 3 * q - 2, 1)
            if year is None and first > today:
                first = first.replace(year=first.year - 1)
            return Span(first, _add_months(first, 3) - timedelta(days=1), words, "quarter")
        if kind == "iso":
            day = _iso(m.group(1), words)
            return Span(day, day, words, "day")
        if kind == "month_year":
            first = date(int(m.group(2)), MONTHS[m.group(1)], 1)
            return Span(first, _add_months(first, 1) - timedelta(days=1), words, "month")
        if kind == "month":
            first = _recent_month(MONTHS[m.group(1)], today)
            return Span(first, _add_months(first, 1) - timedelta(days=1), words, "month")
        if kind == "year":
            year = int(m.group(1))
            if not 1900 <= year <= 2200:
                return None
            return Span(date(year, 1, 1), date(year, 12, 31), words, "year")
        if kind == "named":
            day = self._named_day(m.group(1), today, tenant, words)
            return Span(day, day, words, "day")
        return None

    def _day(self, groups: Sequence, today: date, tenant: str | None, words: str, start: bool) -> date:
        """One end of a range: an ISO date, a named day, a month (its first or last day), or a year."""
        iso, named, month, month_year, year = groups
        if iso:
            return _iso(iso, words)
        if named:
            return self._named_day(named, today, tenant, words)
        if month:
            first = date(int(month_year), MONTHS[month], 1) if month_year else _recent_month(MONTHS[month], today)
            return first if start else _add_months(first, 1) - timedelta(days=1)
        return date(int(year), 1, 1) if start else date(int(year), 12, 31)

    def _named_day(self, phrase: str, today: date, tenant: str | None, words: str) -> date:
        key = self.calendar.phrases()[phrase]
        past = [d for d in self.calendar.days(key, tenant) if d <= today]
        if not past:
            raise DateError(f"{words!r}: the calendar has no {phrase} up to {today.isoformat()}")
        return past[-1]

    @staticmethod
    def _check(days: int, words: str) -> None:
        if days > MAX_DAYS:
            raise DateError(f"{words!r}: longer than the {MAX_DAYS // 366} years a question may cover")


def _iso(text: str, words: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise DateError(f"{words!r}: {text} is not a date") from None


def _recent_month(month: int, today: date) -> date:
    """The most recent such month that has begun ("in March" in November is this year's March)."""
    first = date(today.year, month, 1)
    return first if first <= today else first.replace(year=today.year - 1)
