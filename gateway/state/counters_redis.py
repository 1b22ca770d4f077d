"""Redis counters, shared by every replica: one Lua script per reserve, one per settle/release.

Each script runs atomically on the server, so "check every limit, then add to all or none" and
"settle at most once" hold across processes without locks. Scripts are called by EVALSHA and
loaded on NOSCRIPT (after a Redis restart or SCRIPT FLUSH). Any connection error, timeout or
server error becomes CountersUnavailable: the budget stage decides to fail closed or open.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.state.counters import (
    GRACE_S,
    Amounts,
    Clock,
    CountersUnavailable,
    Entry,
    Limit,
    LimitUsage,
    Refusal,
    Reservation,
    binding_refusal,
    counter_key,
    marker_key,
    plan,
    window_bounds,
)
from gateway.state.resp import RespClient, RespError

__all__ = ["RESERVE_LUA", "SETTLE_LUA", "RedisCounters"]

# KEYS: n counter keys, then the reservation marker.
# ARGV: amount, limit, ttl for each counter, then the marker ttl.
# Returns {1, used_1..used_n} when admitted, {0, i, used_i, ...} for every exceeded limit.
RESERVE_LUA = """
local n = #KEYS - 1
local refused = {0}
for i = 1, n do
  local used = tonumber(redis.call('GET', KEYS[i]) or '0')
  if used + tonumber(ARGV[3 * i - 2]) > tonumber(ARGV[3 * i - 1]) then
    refused[#refused + 1] = i
    refused[#refused + 1] = used
  end
end
if #refused > 1 then return refused end
local after = {1}
for i = 1, n do
  after[i + 1] = redis.call('INCRBY', KEYS[i], ARGV[3 * i - 2])
  redis.call('EXPIRE', KEYS[i], ARGV[3 * i])
end
redis.call('SET', KEYS[n + 1], '1', 'EX', ARGV[3 * n + 1])
return after
"""

# KEYS: the reservation marker, then counter keys. ARGV: one delta per counter key.
# Deleting the marker is the once-only check; counters never go below zero, and a counter
# whose window already expired is not re-created.
SETTLE_LUA = """
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
for i = 2, #KEYS do
  local delta = tonumber(ARGV[i - 1])
  if delta ~= 0 then
    local used = redis.call('GET', KEYS[i])
    if used then
      local value = tonumber(used) + delta
      if value < 0 then value = 0 end
      redis.call('SET', KEYS[i], value, 'KEEPTTL')
    end
  end
end
return 1
"""


def _script(text: str) -> tuple[str, str]:
    return text, hashlib.sha1(text.encode()).hexdigest()


class RedisCounters:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "skillwarden:",
        clock: Clock = time.time,
        timeout_s: float = 1.0,
    ) -> None:
        self._prefix = prefix
        self._clock = clock
        # One quick retry survives a pooled connection that a Redis restart closed; no backoff
        # because a request is waiting. The default (3 retries, backoff) would stall it.
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        # Plain TCP (redis://) takes the small pipelined client in resp.py: ~2x less CPU per
        # command than redis-py (see there). TLS and unix sockets stay on redis-py.
        opts = parse_url(url)
        self._fast = (
            None
            if "connection_class" in opts
            else RespClient(
                opts.get("host", "localhost"),
                int(opts.get("port", 6379)),
                int(opts.get("db", 0)),
                opts.get("password"),
                opts.get("username"),
                timeout_s,
            )
        )
        # name -> (text, sha1); per instance so a test can force NOSCRIPT with a variant text.
        self.scripts = {"reserve": _script(RESERVE_LUA), "settle": _script(SETTLE_LUA)}

    async def reserve(self, limits: Sequence[Limit], amounts: Amounts) -> Reservation | Refusal:
        now = self._clock()
        planned = plan(self._prefix, limits, amounts, now)
        rid = os.urandom(8).hex()
        marker = marker_key(self._prefix, limits, rid)
        args: list[int] = []
        for p in planned:
            args += [p.amount, p.limit.limit, _ttl(p.window_end, now)]
        longest = max((p.window_end for p in planned), default=now)
        args.append(_ttl(longest, now))
        reply = await self._run("reserve", [p.key for p in planned] + [marker], args)
        if int(reply[0]) == 0:
            idx, used = reply[1::2], reply[2::2]
            refused = [(planned[int(i) - 1], int(u)) for i, u in zip(idx, used, strict=True)]
            return binding_refusal(refused, now)
        entries = tuple(
            Entry(p.limit, p.key, p.amount, p.window_end, int(used))
            for p, used in zip(planned, reply[1:], strict=True)
        )
        return Reservation(rid, marker, amounts.tokens, amounts.requests, entries, now)

    async def settle(self, reservation: Reservation, actual_tokens: int) -> bool:
        deltas = [
            max(0, actual_tokens) - e.amount if e.limit.kind == "tokens" else 0
            for e in reservation.entries
        ]
        return await self._apply(reservation, deltas)

    async def release(self, reservation: Reservation) -> bool:
        return await self._apply(reservation, [-e.amount for e in reservation.entries])

    async def usage(self, limit: Limit) -> LimitUsage:
        now = self._clock()
        start, end = window_bounds(limit.window, now)
        raw = await self._command("GET", counter_key(self._prefix, limit, start))
        return LimitUsage(limit, int(raw or 0), max(0.0, end - now))

    async def aclose(self) -> None:
        if self._fast is not None:
            await self._fast.aclose()
        await self._redis.aclose()

    async def _apply(self, reservation: Reservation, deltas: list[int]) -> bool:
        keys = [reservation.marker] + [e.key for e in reservation.entries]
        return int(await self._run("settle", keys, deltas)) == 1

    async def _run(self, name: str, keys: list[str], args: list[int]) -> Any:
        script, sha = self.scripts[name]
        try:
            return await self._command("EVALSHA", sha, len(keys), *keys, *args)
        except _NoScript:
            await self._command("SCRIPT", "LOAD", script)
            return await self._command("EVALSHA", sha, len(keys), *keys, *args)

    async def _command(self, *args: str | int) -> Any:
        """One command; NOSCRIPT -> _NoScript, every other failure -> CountersUnavailable."""
        try:
            if self._fast is None:
                return await self._redis.execute_command(*args)  # type: ignore[no-untyped-call]
            try:
                return await self._fast.call(*args)
            except ConnectionError:  # one immediate retry: a connection a restart closed
                return await self._fast.call(*args)
        except (NoScriptError, RespError) as exc:
            if str(exc).startswith("NOSCRIPT") or isinstance(exc, NoScriptError):
                raise _NoScript from exc
            raise CountersUnavailable(f"redis: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise CountersUnavailable(f"redis: {exc}") from exc


class _NoScript(Exception):
    pass


def _ttl(window_end: float, now: float) -> int:
    return max(1, int(window_end - now) + GRACE_S)
