"""The bench's load generator: an aiohttp client in the bench process, bounded in requests
and seconds. aiohttp sets TCP_NODELAY on its sockets, so no request waits on Nagle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.procs import Child, cpu_seconds

__all__ = ["Load", "Run", "closed_loop", "measure", "percentile", "ttfb", "wait_ready"]

WARMUP = 150


@dataclass(frozen=True, slots=True)
class Load:
    """One request shape: where it goes and what it carries."""

    path: str
    body: bytes
    headers: Mapping[str, str]


@dataclass(slots=True)
class Run:
    latencies: list[float] = field(default_factory=list)  # seconds, completed requests only
    errors: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.count / self.elapsed if self.elapsed else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60.0)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False)


async def closed_loop(
    base: str, load: Load, concurrency: int, max_requests: int, max_seconds: float
) -> Run:
    """`concurrency` connections, each sending its next request when the last one is read;
    stops at max_requests started or max_seconds, whichever comes first."""
    run = Run()
    url = base + load.path
    started = 0
    deadline = time.perf_counter() + max_seconds

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal started
        while started < max_requests and time.perf_counter() < deadline:
            started += 1
            t = time.perf_counter()
            try:
                async with http.post(url, data=load.body, headers=load.headers) as resp:
                    await resp.read()
                    ok = resp.status == 200
                    what = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, what = False, type(exc).__name__
            if ok:
                run.latencies.append(time.perf_counter() - t)
            else:
                run.errors[what] = run.errors.get(what, 0) + 1

    async with session(concurrency) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        run.elapsed = time.perf_counter() - t0
    return run


async def ttfb(http: aiohttp.ClientSession, base: str, load: Load) -> tuple[float, float]:
    """(head, first body chunk) in seconds from the request start; reads the stream to its end."""
    t = time.perf_counter()
    async with http.post(base + load.path, data=load.body, headers=load.headers) as resp:
        head = time.perf_counter() - t
        first = await resp.content.readany()
        first_at = time.perf_counter() - t
        if resp.status != 200 or not first:
            raise RuntimeError(f"paced stream answered HTTP {resp.status}: {first[:200]!r}")
        while await resp.content.readany():  # bounded: the upstream stream has 9 events
            pass
    return head, first_at


async def wait_ready(url: str, child: Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with session(1) as http:
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                break
            try:
                async with http.get(url) as resp:
                    await resp.read()
                    return
            except OSError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{child.name} is not answering on {url}")


async def measure(
    child: Child,
    base: str,
    load: Load,
    conc: int,
    bounds: tuple[int, float],
    probe: Callable[[], dict[str, float]] | None = None,
) -> dict[str, Any]:
    """CPU/req, req/s and latency of one closed-loop run after a warm-up. `probe` (e.g. Redis
    command counts) is sampled around the measured run; its deltas per request are returned."""
    await closed_loop(base, load, conc, WARMUP, 10.0)  # caches, pools, allocator
    await asyncio.sleep(0.3)  # let the audit writer finish the warm-up's records
    before = probe() if probe else {}
    cpu0 = cpu_seconds(child.pid)
    run = await closed_loop(base, load, conc, *bounds)
    await asyncio.sleep(0.3)  # the records of this run are written, and counted here
    cpu = cpu_seconds(child.pid) - cpu0
    after = probe() if probe else {}
    sent = run.count + sum(run.errors.values())  # every request sent may have hit Redis
    per_req = {k: (after[k] - before.get(k, 0.0)) / sent for k in after} if sent else {}
    return {
        "requests": run.count,
        "errors": run.errors,
        "cpu_us_per_req": cpu / run.count * 1e6 if run.count else None,
        "rps": run.rps,
        "p50_ms": percentile(run.latencies, 0.5) * 1e3,
        "p99_ms": percentile(run.latencies, 0.99) * 1e3,
        **({"per_request": per_req} if probe else {}),
    }
