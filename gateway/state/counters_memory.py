"""In-process counters (the embedded default): one dict, fixed windows, lazy expiry.

Atomic under asyncio because reserve/settle/release never await between reading and writing
a counter. Not shared between processes (`--workers N` needs Redis for a global budget).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from gateway.state.counters import (
    GRACE_S,
    Amounts,
    Clock,
    Entry,
    Limit,
    LimitUsage,
    Planned,
    Refusal,
    Reservation,
    binding_refusal,
    counter_key,
    marker_key,
    plan,
    window_bounds,
)

__all__ = ["MemoryCounters"]

_SWEEP_EVERY_S = 30.0


class MemoryCounters:
    """Counters in a dict: key -> [count, expires_at]; open reservations: marker -> expires_at."""

    def __init__(self, *, clock: Clock = time.time, prefix: str = "") -> None:
        self._clock = clock
        self._prefix = prefix
        self._counts: dict[str, list[float]] = {}
        self._open: dict[str, float] = {}
        self._next_sweep = clock() + _SWEEP_EVERY_S

    async def reserve(self, limits: Sequence[Limit], amounts: Amounts) -> Reservation | Refusal:
        now = self._clock()
        self._maybe_sweep(now)
        planned = plan(self._prefix, limits, amounts, now)
        refused = [
            (p, used) for p in planned if (used := self._get(p.key, now)) + p.amount > p.limit.limit
        ]
        if refused:
            return binding_refusal(refused, now)
        entries = tuple(self._add(p, now) for p in planned)
        rid = os.urandom(8).hex()
        marker = marker_key(self._prefix, limits, rid)
        longest = max((p.window_end for p in planned), default=now)
        self._open[marker] = longest + GRACE_S
        return Reservation(rid, marker, amounts.tokens, amounts.requests, entries, now)

    async def settle(self, reservation: Reservation, actual_tokens: int) -> bool:
        deltas = [
            (e, max(0, actual_tokens) - e.amount if e.limit.kind == "tokens" else 0)
            for e in reservation.entries
        ]
        return self._apply(reservation, deltas)

    async def release(self, reservation: Reservation) -> bool:
        return self._apply(reservation, [(e, -e.amount) for e in reservation.entries])

    async def usage(self, limit: Limit) -> LimitUsage:
        now = self._clock()
        start, end = window_bounds(limit.window, now)
        used = self._get(counter_key(self._prefix, limit, start), now)
        return LimitUsage(limit, used, max(0.0, end - now))

    async def aclose(self) -> None:
        self._counts.clear()
        self._open.clear()

    def _get(self, key: str, now: float) -> int:
        slot = self._counts.get(key)
        if slot is None or slot[1] <= now:
            return 0
        return int(slot[0])

    def _add(self, p: Planned, now: float) -> Entry:
        slot = self._counts.get(p.key)
        if slot is None or slot[1] <= now:
            slot = self._counts[p.key] = [0, p.window_end + GRACE_S]
        slot[0] += p.amount
        return Entry(p.limit, p.key, p.amount, p.window_end, int(slot[0]))

    def _apply(self, reservation: Reservation, deltas: list[tuple[Entry, int]]) -> bool:
        # Popping the marker is the idempotency check: the second settle/release finds nothing.
        if self._open.pop(reservation.marker, None) is None:
            return False
        now = self._clock()
        for entry, delta in deltas:
            slot = self._counts.get(entry.key)
            if delta == 0 or slot is None or slot[1] <= now:
                continue  # the window is gone; nothing to correct
            slot[0] = max(0, slot[0] + delta)
        return True

    def _maybe_sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_S
        self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
        self._open = {k: v for k, v in self._open.items() if v > now}
