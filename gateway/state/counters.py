"""Budget and rate counters: fixed windows, reserve-then-settle, one Protocol, two backends.

A request reserves its estimate on every applicable limit at once (all or none), and settles
with the real usage afterwards (or releases a failed attempt). Windows are fixed and aligned:
minute and hour on epoch multiples, day on UTC midnight, month on the 1st of the UTC month.
The window a reservation landed in is the one its settle adjusts, even after a rollover.

Backends: counters_memory.py (in-process, the embedded default) and counters_redis.py (one
Lua script per reserve, shared by every replica). open_counters() picks one by URL.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol
from urllib.parse import quote

__all__ = [
    "Amounts",
    "Clock",
    "Counters",
    "CountersUnavailable",
    "Entry",
    "Kind",
    "Limit",
    "LimitUsage",
    "Refusal",
    "Reservation",
    "Window",
    "open_counters",
    "plan",
    "window_bounds",
]

Window = Literal["minute", "hour", "day", "month"]
Kind = Literal["tokens", "requests"]
Clock = Callable[[], float]  # epoch seconds; injectable so tests can roll windows over

# Keys outlive their window a little, so a settle that arrives just after the end still finds
# the counter it reserved on (and does not re-create a dead one).
GRACE_S = 120
_FIXED = {"minute": 60, "hour": 3600, "day": 86400}


class CountersUnavailable(Exception):
    """The counter store cannot be reached or answered with an error; nothing was counted."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit: `limit` tokens or requests per window, per skill or per (consumer, skill)."""

    skill: str
    window: Window
    kind: Kind
    limit: int
    consumer: str | None = None  # None: shared by every consumer of the skill

    @property
    def scope(self) -> Literal["skill", "consumer"]:
        return "skill" if self.consumer is None else "consumer"

    def rule(self) -> str:
        """A stable rule name for audit records: budget:<skill>:<scope>:<window>:<kind>."""
        return f"budget:{self.skill}:{self.scope}:{self.window}:{self.kind}"


@dataclass(frozen=True, slots=True)
class Amounts:
    tokens: int
    requests: int = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One counter a reservation touched: its key, what was added, and the count after."""

    limit: Limit
    key: str
    amount: int
    window_end: float
    used: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """What reserve() admitted; the caller keeps it and hands it to settle() or release()."""

    id: str
    marker: str  # the key whose deletion makes settle/release happen at most once
    tokens: int
    requests: int
    entries: tuple[Entry, ...]
    created: float

    def tightest(self, kind: Kind) -> Entry | None:
        """The entry of this kind with the least room left (for x-ratelimit-* headers)."""
        found = [e for e in self.entries if e.limit.kind == kind]
        return min(found, key=lambda e: e.limit.limit - e.used, default=None)


@dataclass(frozen=True, slots=True)
class Refusal:
    """The limit that refused: the one whose window ends last among those exceeded, so that
    retrying after `reset_s` can succeed (a minute limit does not hide a day limit)."""

    limit: Limit
    used: int
    requested: int
    reset_s: float

    @property
    def remaining(self) -> int:
        return max(0, self.limit.limit - self.used)


@dataclass(frozen=True, slots=True)
class LimitUsage:
    limit: Limit
    used: int
    reset_s: float

    @property
    def remaining(self) -> int:
        return max(0, self.limit.limit - self.used)


class Counters(Protocol):
    async def reserve(self, limits: Sequence[Limit], amounts: Amounts) -> Reservation | Refusal: ...

    async def settle(self, reservation: Reservation, actual_tokens: int) -> bool: ...

    async def release(self, reservation: Reservation) -> bool: ...

    async def usage(self, limit: Limit) -> LimitUsage: ...

    async def aclose(self) -> None: ...


def window_bounds(window: Window, now: float) -> tuple[float, float]:
    """[start, end) of the fixed window containing `now` (epoch seconds, UTC calendar)."""
    size = _FIXED.get(window)
    if size is not None:
        start = now - now % size
        return start, start + size
    day = datetime.fromtimestamp(now, UTC)
    first = datetime(day.year, day.month, 1, tzinfo=UTC)
    nxt = datetime(day.year + day.month // 12, day.month % 12 + 1, 1, tzinfo=UTC)
    return first.timestamp(), nxt.timestamp()


def counter_key(prefix: str, limit: Limit, window_start: float) -> str:
    return f"{_key_stem(prefix, limit)}:{int(window_start)}:{_key_who(limit.consumer)}"


# Bounded caches of the quoted parts: a request's names repeat on every turn of an agent.
@functools.lru_cache(maxsize=4096)
def _key_stem(prefix: str, limit: Limit) -> str:
    # {skill} is a Redis Cluster hash tag: one request's keys share a slot. Names are
    # percent-quoted so a ':' or '{' in a consumer name cannot forge another key.
    return f"{prefix}{{{quote(limit.skill, safe='')}}}:{limit.kind}:{limit.window}"


@functools.lru_cache(maxsize=4096)
def _key_who(consumer: str | None) -> str:
    return "*" if consumer is None else "c=" + quote(consumer, safe="")


def marker_key(prefix: str, limits: Sequence[Limit], reservation_id: str) -> str:
    skill = quote(limits[0].skill, safe="") if limits else "-"
    return f"{prefix}{{{skill}}}:res:{reservation_id}"


@dataclass(frozen=True, slots=True)
class Planned:
    limit: Limit
    key: str
    amount: int
    window_end: float


def plan(prefix: str, limits: Sequence[Limit], amounts: Amounts, now: float) -> list[Planned]:
    """One entry per distinct counter; two limits on the same counter keep the lower limit
    (adding twice to one key would double-count)."""
    by_key: dict[str, Planned] = {}
    for limit in limits:
        start, end = window_bounds(limit.window, now)
        key = counter_key(prefix, limit, start)
        amount = amounts.tokens if limit.kind == "tokens" else amounts.requests
        known = by_key.get(key)
        if known is None or limit.limit < known.limit.limit:
            by_key[key] = Planned(limit, key, max(0, amount), end)
    return list(by_key.values())


def binding_refusal(refused: Sequence[tuple[Planned, int]], now: float) -> Refusal:
    """Among the exceeded limits, the one that resets last (see Refusal)."""
    planned, used = max(refused, key=lambda pair: (pair[0].window_end, -pair[0].limit.limit))
    return Refusal(planned.limit, used, planned.amount, max(0.0, planned.window_end - now))


def open_counters(
    url: str,
    prefix: str = "skillwarden:",
    *,
    clock: Clock = time.time,
    timeout_s: float = 1.0,
) -> Counters:
    """`memory` -> in-process counters; `redis://` / `rediss://` -> shared Redis counters.

    timeout_s bounds connect and each command, so a dead Redis fails a request fast.
    """
    if url == "memory":
        from gateway.state.counters_memory import MemoryCounters

        return MemoryCounters(clock=clock, prefix=prefix)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.state.counters_redis import RedisCounters

        return RedisCounters(url, prefix=prefix, clock=clock, timeout_s=timeout_s)
    raise ValueError(f"unsupported counters URL: {url!r} (memory or redis://...)")
