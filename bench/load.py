"""The bench's load generator: an aiohttp client in the bench process, bounded in requests
and seconds. aiohttp sets TCP_NODELAY on its sockets, so no request waits on Nagle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

__all__ = ["Load", "Run", "closed_loop", "percentile", "ttfb"]


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
