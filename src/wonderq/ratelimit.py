"""Token buckets: a request rate per key (a principal, or a client address without auth) and one for the whole
server. Pure: every call takes `now` (seconds on any monotonic clock; the web layer passes trio's, so tests run
on virtual time).

A bucket holds up to `burst` tokens and gains `rate` tokens a second; a request takes one. Buckets that are full
again are forgotten (they are what a new bucket would be), so memory follows the keys seen within the last
`burst / rate` seconds, and at most `max_keys` of them are kept at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_KEYS = 100_000  # buckets kept at once; past that the least recently used go (they start full again)


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second; 0 or less: unlimited
    burst: float  # most tokens held
    tokens: float
    updated_at: float  # seconds

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take `cost` tokens if there are enough: 0.0. Otherwise take none and return the seconds until there
        will be enough."""
        if self.rate <= 0:
            return 0.0
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.updated_at) * self.rate)
        self.updated_at = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def is_full(self, now: float) -> bool:
        return self.tokens + max(0.0, now - self.updated_at) * self.rate >= self.burst


class RateLimiter:
    """Per-key buckets of `rate`/`burst`, plus a global bucket of `global_rate`/`global_burst` (rate 0: none)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        global_rate: float = 0.0,
        global_burst: int = 1,
        *,
        now: float = 0.0,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._global = TokenBucket.full(global_rate, float(global_burst), now)
        self._buckets: dict[str, TokenBucket] = {}  # insertion order: least recently used first
        self._max_keys = max_keys
        self._sweep_at = now

    def take_global(self, now: float) -> float:
        """One request of the whole server: 0.0 if admitted, else the seconds to wait."""
        return self._global.take(now)

    def take(self, key: str, now: float) -> float:
        """One request of `key`: 0.0 if admitted, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.pop(key, None)  # re-inserted below: the most recently used is last
        if bucket is None:
            bucket = TokenBucket.full(self.rate, self.burst, now)
            if len(self._buckets) >= self._max_keys:
                self._forget(now)
        self._buckets[key] = bucket
        wait = bucket.take(now)
        if now >= self._sweep_at:
            self._forget_full(now)
        return wait

    def keys(self) -> int:
        """How many buckets are kept (for tests and metrics)."""
        return len(self._buckets)

    def _forget(self, now: float) -> None:
        """Make room for one more key: drop full buckets, and if none is full, the least recently used."""
        self._forget_full(now)
        if len(self._buckets) >= self._max_keys:
            del self._buckets[next(iter(self._buckets))]

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have filled up again; at most once per refill time, so this stays O(1) a call
        on average."""
        self._buckets = {key: bucket for key, bucket in self._buckets.items() if not bucket.is_full(now)}
        refill = self.burst / self.rate if self.rate > 0 else math.inf
        self._sweep_at = now + max(1.0, refill)


def retry_after_header(seconds: float) -> str:
    """Seconds as a `Retry-After` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
