"""Budget stage benchmark: gateway CPU per reserve + settle, in-process counters vs Redis.

Run: ``.venv/bin/python -m bench.budget_bench`` (a few seconds; needs Redis at 127.0.0.1:6379
for the Redis rows, skipped when unreachable). CPU is this process's CPU time (the Redis
server's own work is not gateway CPU); wall time includes the two round trips per request.
Each request has 4 limits (skill hour tokens + requests, per-consumer day tokens, consumer
month requests), like a budgeted skill with a consumer budget. Issue 5 target: the Redis
reserve and settle add <= 150 us of gateway CPU and one round trip each.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable

import orjson

from gateway.formats.canonical import Usage
from gateway.pipeline.budget import limits_for, reserve_budget, settle_budget
from gateway.pipeline.context import RequestContext
from gateway.settings import Settings
from gateway.state.counters import (
    Amounts,
    Counters,
    CountersUnavailable,
    Reservation,
    open_counters,
)

ITERATIONS = 2_000
REDIS_URL = "redis://127.0.0.1:6379/0"
SETTINGS = Settings.model_validate(
    {
        "data_dir": "/tmp/sw-bench",
        "skills": {
            "code-review": {
                "budgets": [
                    {"window": "hour", "tokens": 10**12, "requests": 10**9},
                    {"window": "day", "scope": "consumer", "tokens": 10**12},
                ]
            }
        },
        "consumers": {"alice": {"budgets": [{"window": "month", "requests": 10**9}]}},
    }
)
BODY = {"model": "m", "max_tokens": 1_000, "messages": [{"role": "user", "content": "x" * 20_000}]}
RAW = orjson.dumps(BODY)


def _ctx() -> RequestContext:
    ctx = RequestContext("r", "/v1/messages", "anthropic", {}, RAW)
    ctx.body, ctx.skill, ctx.consumer = BODY, "code-review", "alice"
    return ctx


async def _stage(counters: Counters) -> None:
    ctx = _ctx()
    hold = await reserve_budget(ctx, counters, SETTINGS)
    await settle_budget(ctx, counters, hold, Usage(input_tokens=4_000, output_tokens=300))


LIMITS = limits_for(_ctx(), SETTINGS)  # the stage's own selection: 4 limits


async def _raw(counters: Counters) -> None:
    r = await counters.reserve(LIMITS, Amounts(6_000))
    if isinstance(r, Reservation):
        await counters.settle(r, 4_300)


async def _measure(
    step: Callable[[Counters], Awaitable[None]], counters: Counters
) -> tuple[float, float, float]:
    for _ in range(100):  # warm up: connections, script cache, allocator
        await step(counters)
    laps = []
    cpu0 = time.process_time()
    for _ in range(ITERATIONS):
        t = time.perf_counter()
        await step(counters)
        laps.append(time.perf_counter() - t)
    cpu = time.process_time() - cpu0
    laps.sort()
    return cpu / ITERATIONS * 1e6, statistics.median(laps) * 1e6, laps[int(len(laps) * 0.99)] * 1e6


async def main() -> None:
    prefix = f"swbench:{secrets.token_hex(4)}:"
    backends: list[tuple[str, Counters]] = [("memory", open_counters("memory"))]
    redis_counters = open_counters(REDIS_URL, prefix)
    try:
        await redis_counters.usage(LIMITS[0])
        backends.append(("redis", redis_counters))
    except CountersUnavailable:
        print("(Redis unreachable at 127.0.0.1:6379: Redis rows skipped)")
    print(f"{ITERATIONS} iterations each, {len(LIMITS)} limits per request, loop: {_loop_name()}")
    print(f"{'backend':<8} {'what':<26} {'CPU us/req':>11} {'p50 us':>9} {'p99 us':>9}")
    for name, counters in backends:
        for label, step in (("counters reserve+settle", _raw), ("stage reserve+settle", _stage)):
            cpu, p50, p99 = await _measure(step, counters)
            print(f"{name:<8} {label:<26} {cpu:>11.1f} {p50:>9.1f} {p99:>9.1f}")
    await _cleanup(prefix)
    for _, counters in backends:
        await counters.aclose()
    if len(backends) == 1:
        await redis_counters.aclose()


async def _cleanup(prefix: str) -> None:
    import redis.asyncio as aioredis

    try:
        client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    except OSError:
        pass
    except Exception as exc:  # noqa: BLE001 - cleanup of a bench must not hide its figures
        print(f"(cleanup of {prefix}* failed: {exc})")


def _loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def run() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())  # what `skillwarden serve` runs on


if __name__ == "__main__":
    run()
