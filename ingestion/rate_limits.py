"""Rate limits of the platform's servers: how a setting names them, and the limiter that applies them.

A setting holds one or more rates in the notation of the `limits` package (PyPI), which does the
counting: `100/second`, `20/second;1000/minute`, `5000 per minute`; empty or `off` for none. The
collector counts events per write key; the metrics server and the SQL endpoint count requests and
statements per token.

Counting uses `limits`' sliding-window counters in the memory of the process that decides (one per
server: the collector's landing process decides for all its workers). A request is admitted only if
every rate has room for its cost; otherwise nothing is counted and the caller is told how long to
wait, which it sends as `Retry-After`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import limits
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

Rates = tuple[limits.RateLimitItem, ...]
EXAMPLE = "'100/second' or '20/second;1000/minute'"


def parse_rates(value: str, setting: str) -> Rates:
    """The rates a setting's value names (none for empty or `off`); ValueError naming the setting."""
    text = value.strip()
    if not text or text.lower() == "off":
        return ()
    try:
        rates = tuple(limits.parse_many(text))
    except ValueError:
        raise ValueError(f"{setting}={value!r}: not a rate limit; write it as {EXAMPLE}, or off") from None
    for rate in rates:
        if rate.amount <= 0:
            raise ValueError(f"{setting}={value!r}: {rate} admits nothing; use off for no limit")
    return rates


def rates_from(env: Mapping[str, str], setting: str, default: str = "") -> Rates:
    return parse_rates(env.get(setting, default), setting)


def describe(rates: Sequence[limits.RateLimitItem]) -> str:
    return " and ".join(str(rate) for rate in rates) or "none"


@dataclass(frozen=True)
class Refusal:
    """Why a request was not admitted, and how long to wait before trying again."""

    rate: limits.RateLimitItem
    retry_after: int  # whole seconds, at least 1
    never: bool = False  # the request alone costs more than the rate ever admits

    def message(self, what: str) -> str:
        if self.never:
            return f"{what} is more than the limit of {self.rate} admits at once: send less at a time"
        return f"rate limit of {self.rate} reached; retry after {self.retry_after} s"


class Limiter:
    """Counts cost per identity against rates; one instance per deciding process."""

    def __init__(self, rates: Rates = ()):
        self.rates = rates
        self._counter = SlidingWindowCounterRateLimiter(MemoryStorage())

    def hit(self, identity: str, cost: int = 1, rates: Rates | None = None) -> Refusal | None:
        """Count `cost` for `identity` if every rate has room (None: admitted); else count nothing."""
        rates = self.rates if rates is None else rates
        for rate in rates:
            if cost > rate.amount:
                return Refusal(rate, 1, never=True)
        full = [rate for rate in rates if not self._counter.test(rate, identity, cost=cost)]
        if full:
            now = time.time()
            waits = [(self._counter.get_window_stats(rate, identity).reset_time - now, rate) for rate in full]
            wait, rate = max(waits, key=lambda pair: pair[0])
            return Refusal(rate, max(1, math.ceil(wait)))
        for rate in rates:
            self._counter.hit(rate, identity, cost=cost)
        return None
