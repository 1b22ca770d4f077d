"""Counters contract: the same suite on the in-process backend and on the real Redis server.

Redis runs use a unique key prefix and delete their keys afterwards. Redis being down is not
simulated by stopping the shared server: a counters instance points at a closed port, or at a
tiny TCP server that accepts and drops every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import redis
import redis.asyncio as aioredis

from gateway.state.counters import (
    Amounts,
    Counters,
    CountersUnavailable,
    Limit,
    Refusal,
    Reservation,
    open_counters,
    window_bounds,
)
from gateway.state.counters_memory import MemoryCounters
from gateway.state.counters_redis import RedisCounters

REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeClock:
    """Epoch seconds that tests move by hand; starts 10 s into a real hour."""

    def __init__(self) -> None:
        self.now = time.time() // 3600 * 3600 + 10

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted after the test."""
    prefix = f"swtest:{secrets.token_hex(6)}:"
    yield prefix
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Counters]:
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        prefix = request.getfixturevalue("redis_prefix")
        made = open_counters(REDIS_URL, prefix, clock=clock)
    else:
        made = open_counters("memory", clock=clock)
    yield made
    await made.aclose()


def tokens(limit: int, window: str = "minute", consumer: str | None = None) -> Limit:
    return Limit("code-review", window, "tokens", limit, consumer)  # type: ignore[arg-type]


def admitted(result: Reservation | Refusal) -> Reservation:
    assert isinstance(result, Reservation), result
    return result


def refused(result: Reservation | Refusal) -> Refusal:
    assert isinstance(result, Refusal), result
    return result


async def test_reserve_adds_to_every_limit(counters: Counters) -> None:
    limits = [
        tokens(10_000),
        tokens(50_000, "day", "alice"),
        Limit("code-review", "hour", "requests", 5),
    ]
    r = admitted(await counters.reserve(limits, Amounts(1_200)))
    assert [e.used for e in r.entries] == [1_200, 1_200, 1]
    assert [(await counters.usage(limit)).used for limit in limits] == [1_200, 1_200, 1]


async def test_all_or_none(counters: Counters) -> None:
    small, big = tokens(1_000, "minute"), tokens(100_000, "day")
    admitted(await counters.reserve([small, big], Amounts(800)))
    refusal = refused(await counters.reserve([big, small], Amounts(300)))
    assert refusal.limit == small
    assert (refusal.used, refusal.remaining, refusal.requested) == (800, 200, 300)
    assert (await counters.usage(big)).used == 800  # the passing limit was not charged either


async def test_refusal_names_the_limit_that_resets_last(
    counters: Counters, clock: FakeClock
) -> None:
    minute, day = tokens(1_000, "minute"), tokens(1_000, "day")
    admitted(await counters.reserve([minute, day], Amounts(1_000)))
    refusal = refused(await counters.reserve([minute, day], Amounts(1)))
    assert refusal.limit == day
    assert refusal.reset_s == pytest.approx(window_bounds("day", clock.now)[1] - clock.now)


async def test_request_limit(counters: Counters, clock: FakeClock) -> None:
    per_minute = Limit("code-review", "minute", "requests", 2, "bob")
    for _ in range(2):
        admitted(await counters.reserve([per_minute], Amounts(10)))
    refusal = refused(await counters.reserve([per_minute], Amounts(10)))
    assert (refusal.limit.kind, refusal.remaining, refusal.reset_s) == ("requests", 0, 50)


async def test_scopes_are_separate_counters(counters: Counters) -> None:
    shared, alice, bob = (
        tokens(3_000),
        tokens(1_000, consumer="alice"),
        tokens(1_000, consumer="bob"),
    )
    admitted(await counters.reserve([shared, alice], Amounts(1_000)))
    admitted(await counters.reserve([shared, bob], Amounts(1_000)))
    refused(await counters.reserve([shared, alice], Amounts(1)))
    assert (await counters.usage(shared)).used == 2_000
    # A consumer name cannot forge another counter's key.
    tricky = tokens(1_000, consumer="x:*:c=alice")
    assert (await counters.usage(tricky)).used == 0


async def test_duplicate_limits_count_once_and_keep_the_lower(counters: Counters) -> None:
    loose, tight = tokens(5_000, consumer="alice"), tokens(1_000, consumer="alice")
    r = admitted(await counters.reserve([loose, tight], Amounts(600)))
    assert len(r.entries) == 1 and r.entries[0].used == 600
    refused(await counters.reserve([loose, tight], Amounts(600)))


async def test_a_request_larger_than_the_limit_is_refused(counters: Counters) -> None:
    refusal = refused(await counters.reserve([tokens(1_000)], Amounts(1_001)))
    assert refusal.used == 0 and refusal.requested == 1_001


async def test_no_limits_reserves_nothing(counters: Counters) -> None:
    r = admitted(await counters.reserve([], Amounts(5)))
    assert r.entries == ()
    assert await counters.settle(r, 3) is True


async def test_settle_adjusts_by_the_difference_once(counters: Counters) -> None:
    limit = tokens(10_000)
    r = admitted(await counters.reserve([limit], Amounts(1_000)))
    assert await counters.settle(r, 250) is True
    assert (await counters.usage(limit)).used == 250
    assert await counters.settle(r, 900) is False
    assert await counters.release(r) is False
    assert (await counters.usage(limit)).used == 250


async def test_settle_may_charge_more_than_reserved(counters: Counters) -> None:
    limit = tokens(10_000)
    r = admitted(await counters.reserve([limit], Amounts(1_000)))
    await counters.settle(r, 1_500)
    assert (await counters.usage(limit)).used == 1_500


async def test_release_gives_everything_back_once(counters: Counters) -> None:
    toks, reqs = tokens(10_000), Limit("code-review", "minute", "requests", 10)
    keep = admitted(await counters.reserve([toks, reqs], Amounts(700)))
    r = admitted(await counters.reserve([toks, reqs], Amounts(1_000)))
    assert await counters.release(r) is True
    assert await counters.release(r) is False
    assert await counters.settle(r, 10) is False
    assert ((await counters.usage(toks)).used, (await counters.usage(reqs)).used) == (700, 1)
    await counters.settle(keep, -50)  # a negative actual counts as zero
    assert (await counters.usage(toks)).used == 0


async def test_windows_roll_over(counters: Counters, clock: FakeClock) -> None:
    limit = tokens(1_000)
    old = admitted(await counters.reserve([limit], Amounts(1_000)))
    refusal = refused(await counters.reserve([limit], Amounts(1)))
    clock.now += refusal.reset_s
    new = admitted(await counters.reserve([limit], Amounts(400)))
    # Settling the previous window's reservation does not touch the new window.
    await counters.settle(old, 10)
    assert (await counters.usage(limit)).used == 400
    assert new.entries[0].key != old.entries[0].key


async def test_usage_reports_reset(counters: Counters, clock: FakeClock) -> None:
    usage = await counters.usage(tokens(100, "hour"))
    assert (usage.used, usage.remaining) == (0, 100)
    assert usage.reset_s == pytest.approx(3_600 - 10)


async def test_fifty_concurrent_reserves_admit_at_most_the_budget(counters: Counters) -> None:
    limit = tokens(15_000, "hour")
    admitted(await counters.reserve([limit], Amounts(5_000)))  # 10,000 remain
    results = await asyncio.gather(*(counters.reserve([limit], Amounts(1_000)) for _ in range(50)))
    won = [r for r in results if isinstance(r, Reservation)]
    assert len(won) == 10
    assert all(isinstance(r, Refusal) and r.remaining == 0 for r in results if r not in won)
    await asyncio.gather(*(counters.settle(r, 1_000 - 37 * i) for i, r in enumerate(won)))
    assert (await counters.usage(limit)).used <= 15_000


@pytest.mark.parametrize(
    ("now", "window", "start", "end"),
    [
        ("2024-12-31T23:59:59", "month", "2024-12-01T00:00:00", "2025-01-01T00:00:00"),
        ("2024-02-29T12:00:00", "month", "2024-02-01T00:00:00", "2024-03-01T00:00:00"),
        ("2024-03-10T23:59:59", "day", "2024-03-10T00:00:00", "2024-03-11T00:00:00"),
        ("2024-03-10T10:42:13", "hour", "2024-03-10T10:00:00", "2024-03-10T11:00:00"),
        ("2024-03-10T10:42:13", "minute", "2024-03-10T10:42:00", "2024-03-10T10:43:00"),
    ],
)
def test_windows_are_aligned_on_utc_calendar(now: str, window: str, start: str, end: str) -> None:
    def ts(text: str) -> float:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()

    assert window_bounds(window, ts(now)) == (ts(start), ts(end))  # type: ignore[arg-type]


# --- Redis specifics --------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_counter_never_goes_below_zero(redis_prefix: str) -> None:
    counters = RedisCounters(REDIS_URL, prefix=redis_prefix)
    limit = tokens(10_000)
    r = admitted(await counters.reserve([limit], Amounts(1_000)))
    client = aioredis.Redis.from_url(REDIS_URL)
    await client.set(r.entries[0].key, 300, keepttl=True)  # an operator reset the counter
    await counters.release(r)
    assert (await counters.usage(limit)).used == 0
    ttl = await client.ttl(r.entries[0].key)
    assert 0 < ttl <= 60 + 120  # keys expire after their window (plus grace)
    await client.aclose()
    await counters.aclose()


@pytest.mark.redis
async def test_redis_loads_scripts_on_noscript(redis_prefix: str) -> None:
    counters = RedisCounters(REDIS_URL, prefix=redis_prefix)
    for name, (text, _) in list(counters.scripts.items()):
        # A text no server has seen forces the EVALSHA -> NOSCRIPT -> SCRIPT LOAD path.
        variant = f"{text}\n-- {secrets.token_hex(8)}\n"
        counters.scripts[name] = (variant, hashlib.sha1(variant.encode()).hexdigest())
    r = admitted(await counters.reserve([tokens(10)], Amounts(4)))
    assert await counters.settle(r, 2) is True
    await counters.aclose()


@pytest.fixture
async def dropping_server() -> AsyncIterator[int]:
    """A TCP server that accepts each connection and closes it at once."""

    async def drop(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


async def _assert_unavailable(port: int) -> None:
    counters = open_counters(f"redis://127.0.0.1:{port}/0", "swtest:down:", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(CountersUnavailable):
        await counters.reserve([tokens(10)], Amounts(1))
    with pytest.raises(CountersUnavailable):
        await counters.usage(tokens(10))
    fake = Reservation("x", "swtest:down:{x}:res:x", 1, 1, (), time.time())
    with pytest.raises(CountersUnavailable):
        await counters.settle(fake, 1)
    assert time.monotonic() - started < 5  # fails fast: no long retry loop
    await counters.aclose()


async def test_closed_port_is_a_typed_error() -> None:
    await _assert_unavailable(_closed_port())


async def test_dropped_connections_are_a_typed_error(dropping_server: int) -> None:
    await _assert_unavailable(dropping_server)


def test_open_counters_picks_the_backend() -> None:
    assert isinstance(open_counters("memory"), MemoryCounters)
    assert isinstance(open_counters("redis://127.0.0.1:1/0"), RedisCounters)
    with pytest.raises(ValueError, match="unsupported"):
        open_counters("postgresql://x")


async def test_memory_sweeps_expired_windows(clock: FakeClock) -> None:
    counters = MemoryCounters(clock=clock)
    await counters.reserve([tokens(10)], Amounts(1))
    assert len(counters._counts) == 1
    clock.now += 3_600
    await counters.reserve([tokens(10, consumer="z")], Amounts(1))
    assert len(counters._counts) == 1  # the old minute's counter is gone


class RedisProxy:
    """A TCP forwarder to the shared Redis that can be stopped and started again on the same
    port: Redis going away and coming back, without touching the shared server."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.redis
async def test_service_resumes_when_redis_comes_back(redis_prefix: str) -> None:
    proxy = RedisProxy()
    await proxy.start()
    counters = open_counters(f"redis://127.0.0.1:{proxy.port}/0", redis_prefix, timeout_s=0.5)
    limit = tokens(10_000)
    first = admitted(await counters.reserve([limit], Amounts(100)))
    await proxy.stop()
    with pytest.raises(CountersUnavailable):
        await counters.reserve([limit], Amounts(100))
    await proxy.start()  # same port: the pool reconnects on the next command
    admitted(await counters.reserve([limit], Amounts(100)))
    assert await counters.settle(first, 50) is True
    assert (await counters.usage(limit)).used == 150
    await counters.aclose()
    await proxy.stop()
