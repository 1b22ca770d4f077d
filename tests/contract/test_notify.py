"""Registry notices on memory and real Redis: delivery, reconnect after an outage (a private
redis-server that the test stops and starts; never the shared one), and the reload wiring."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager

import pytest

from gateway.runtime import SkillCache
from gateway.settings import Settings
from gateway.state.notify import (
    MemoryNotifier,
    RedisNotifier,
    RegistryEvent,
    RegistryNotifier,
    open_notifier,
    registry_sync,
)
from policies.enforcer import PolicyEngine

REDIS_URL = "redis://127.0.0.1:6379/0"
WAIT_S = 5.0  # every wait in this file is bounded by this


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of our own on a fixed free port, stoppable and restartable."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.proc = subprocess.Popen(
            [*args, "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + WAIT_S
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)
        self.proc = None


@contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
async def notifier(request: pytest.FixtureRequest) -> AsyncIterator[RegistryNotifier]:
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        made = open_notifier(REDIS_URL, f"swtest:{secrets.token_hex(6)}:")
    else:
        made = open_notifier("memory")
    yield made
    await made.aclose()


async def next_event(events: AsyncIterator[RegistryEvent]) -> RegistryEvent:
    return await asyncio.wait_for(anext(events), WAIT_S)


async def test_publish_reaches_every_subscriber(notifier: RegistryNotifier) -> None:
    async with aclosing(notifier.subscribe()) as one, aclosing(notifier.subscribe()) as two:
        assert (await next_event(one)).kind == "subscribed"
        assert (await next_event(two)).kind == "subscribed"
        sent = RegistryEvent("published", "code-review", "2")
        assert await notifier.publish(sent) is True
        assert await next_event(one) == sent
        assert await next_event(two) == sent


@pytest.mark.redis
async def test_redis_notice_crosses_clients_and_ignores_garbage() -> None:
    prefix = f"swtest:{secrets.token_hex(6)}:"
    sender, receiver = RedisNotifier(REDIS_URL, prefix), RedisNotifier(REDIS_URL, prefix)
    other = RedisNotifier(REDIS_URL, f"swtest:{secrets.token_hex(6)}:")  # another deployment
    try:
        async with aclosing(receiver.subscribe()) as events:
            assert (await next_event(events)).kind == "subscribed"
            await sender._redis.publish(sender.channel, b"not json")
            await sender._redis.publish(sender.channel, b'{"kind": "drop-tables"}')
            await other.publish(RegistryEvent("published", "elsewhere", "9"))
            sent = RegistryEvent("published", "pdf-processing", "3")
            assert await sender.publish(sent) is True
            assert await next_event(events) == sent  # the garbage and the other prefix: skipped
    finally:
        for n in (sender, receiver, other):
            await n.aclose()


@pytest.mark.redis
async def test_subscriber_survives_a_redis_restart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "skillwarden.notify")
    with private_redis() as server:
        notifier = RedisNotifier(server.url, "swtest:", timeout_s=0.3, retry_max_s=0.3)
        try:
            async with aclosing(notifier.subscribe()) as events:
                assert (await next_event(events)).kind == "subscribed"
                pending = asyncio.ensure_future(next_event(events))
                server.stop()
                await asyncio.sleep(1.5)  # several reconnect attempts fail meanwhile
                assert not pending.done()  # an outage is not an exception to the consumer
                assert await notifier.publish(RegistryEvent("published", "x", "1")) is False
                server.start()
                assert (await pending).kind == "subscribed"  # reconnected: reload everything
                sent = RegistryEvent("published", "code-review", "4")
                assert await notifier.publish(sent) is True
                assert await next_event(events) == sent
        finally:
            await notifier.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("notices unavailable" in w for w in warnings) == 1, warnings  # once per outage
    assert sum("notices resumed" in w for w in warnings) == 1, warnings


@pytest.mark.redis
async def test_a_silent_subscriber_connection_is_replaced() -> None:
    with private_redis() as server:
        notifier = RedisNotifier(server.url, "swtest:", timeout_s=0.3, retry_max_s=0.3)
        notifier._ping_s = 0.2
        try:
            async with aclosing(notifier.subscribe()) as events:
                assert (await next_event(events)).kind == "subscribed"
                assert server.proc is not None
                server.proc.send_signal(19)  # SIGSTOP: the socket stays open, nothing answers
                try:
                    pending = asyncio.ensure_future(next_event(events))
                    await asyncio.sleep(1.2)  # > 3 ping periods: the connection is given up
                finally:
                    server.proc.send_signal(18)  # SIGCONT
                assert (await pending).kind == "subscribed"
        finally:
            await notifier.aclose()


async def test_registry_sync_reloads_on_notice_and_periodically() -> None:
    notifier = MemoryNotifier()
    reloads: list[float] = []
    async with registry_sync(notifier, lambda: reloads.append(time.monotonic()), 0.3) as sync:
        await asyncio.sleep(0.05)
        start = len(reloads)  # the first subscription reloads once
        assert await sync.changed("code-review", "2") is True  # local reload + loopback notice
        await asyncio.sleep(0.05)
        assert len(reloads) == start + 2
        await asyncio.sleep(0.7)
        assert len(reloads) >= start + 4  # two periodic reloads at 0.3 s


async def test_registry_sync_starts_and_reloads_with_redis_down() -> None:
    port = free_port()  # nothing listens there
    notifier = RedisNotifier(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
    reloads: list[float] = []
    started = time.monotonic()
    async with registry_sync(notifier, lambda: reloads.append(1.0), 0.2, ready_wait_s=0.5) as sync:
        assert time.monotonic() - started < 1.5  # start-up waits at most ready_wait_s
        assert await sync.changed("x", "1") is False  # not sent, but reloaded here
        await asyncio.sleep(0.5)
        assert len(reloads) >= 3  # local reload, then the periodic backstop


def test_open_notifier_picks_the_backend() -> None:
    assert isinstance(open_notifier("memory"), MemoryNotifier)
    assert isinstance(open_notifier("redis://127.0.0.1:1/0"), RedisNotifier)
    with pytest.raises(ValueError, match="unsupported"):
        open_notifier("postgresql://x")


class _SlowStore:
    """get_version waits for `release`: a reload can happen while a read is in flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.reads = 0

    async def get_version(self, name: str, version: str | None) -> None:
        self.reads += 1
        await asyncio.wait_for(self.release.wait(), WAIT_S)


async def test_a_read_that_straddles_a_reload_is_not_cached() -> None:
    store = _SlowStore()
    cache = SkillCache(store, PolicyEngine(), Settings())  # type: ignore[arg-type]
    pending = asyncio.ensure_future(cache.resolve("probe", None))
    await asyncio.sleep(0.01)
    cache.reload()  # a notice arrives while the old answer is on its way
    store.release.set()
    assert await pending is None
    await cache.resolve("probe", None)
    assert store.reads == 2  # the answer read before the reload was not kept
    await cache.resolve("probe", None)
    assert store.reads == 2  # an answer read after it is
