"""Two OS processes share one Redis budget: 50 reserves of 1,000 tokens (25 each, concurrent
within each process, both processes released at the same instant) against 10,000 remaining."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.state.counters import Amounts, Limit, Reservation, open_counters

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parents[2]

# argv: prefix, now (the shared fixed clock), start_at (wall time to fire), attempts.
WORKER = """
import asyncio, json, sys, time
from gateway.state.counters import Amounts, Limit, Reservation, open_counters

async def main(prefix: str, now: float, start_at: float, attempts: int) -> None:
    counters = open_counters(sys.argv[5], prefix, clock=lambda: now)
    limit = Limit("code-review", "hour", "tokens", 15_000)
    await counters.usage(limit)  # connect before the start line
    await asyncio.sleep(max(0.0, start_at - time.time()))
    results = await asyncio.gather(
        *(counters.reserve([limit], Amounts(1_000)) for _ in range(attempts))
    )
    won = [r for r in results if isinstance(r, Reservation)]
    actual = [1_000 - 10 * i for i in range(len(won))]
    await asyncio.gather(*(counters.settle(r, a) for r, a in zip(won, actual)))
    await counters.aclose()
    print(json.dumps({"admitted": len(won), "settled": sum(actual)}))

asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
"""


@pytest.fixture
def prefix() -> Iterator[str]:
    value = f"swtest:{secrets.token_hex(6)}:"
    yield value
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"{value}*", count=1000))
        if keys:
            client.delete(*keys)


async def test_two_processes_share_one_budget(prefix: str) -> None:
    now = time.time()
    limit = Limit("code-review", "hour", "tokens", 15_000)
    counters = open_counters(REDIS_URL, prefix, clock=lambda: now)
    first = await counters.reserve([limit], Amounts(5_000))  # 10,000 remain
    assert isinstance(first, Reservation)
    start_at = time.time() + 1.5  # both interpreters are up and connected by then
    args = [prefix, repr(now), repr(start_at), "25", REDIS_URL]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WORKER, *args, cwd=ROOT, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    reports = [json.loads(out) for out, _ in outputs]
    assert sum(r["admitted"] for r in reports) == 10
    used = (await counters.usage(limit)).used
    assert used == 5_000 + sum(r["settled"] for r in reports)
    assert used <= 15_000
    await counters.aclose()
