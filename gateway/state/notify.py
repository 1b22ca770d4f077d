"""Registry change notices between replicas, and the reload wiring that consumes them.

A replica that publishes a skill tells the others on `<key_prefix>registry` (Redis pub/sub);
each replica forgets its skill cache when a notice arrives. Pub/sub is fire-and-forget, so a
notice sent while a subscriber is disconnected is lost: the subscriber reloads when it
reconnects, and a periodic full reload bounds what any lost notice can cost. The embedded
(`memory`) backend loops notices back inside the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # redis is imported when a Redis notifier is made: the CLI starts faster
    from redis.asyncio.client import PubSub

__all__ = [
    "MemoryNotifier",
    "RedisNotifier",
    "RegistryEvent",
    "RegistryNotifier",
    "RegistrySync",
    "open_notifier",
    "registry_sync",
]

log = logging.getLogger("skillwarden.notify")
EventKind = Literal["published", "subscribed"]
REPLICA_ID = os.urandom(6).hex()  # tells the log which replica a notice came from


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """`published`: a skill version was stored. `subscribed`: the subscription is (re)made, so
    notices may have been missed before it: the receiver reloads everything."""

    kind: EventKind
    skill: str = ""
    version: str = ""
    origin: str = REPLICA_ID

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes | str) -> RegistryEvent | None:
        try:
            raw = json.loads(data)
            kind = raw["kind"]
            if kind not in ("published", "subscribed"):
                return None
            return cls(kind, str(raw.get("skill", "")), str(raw.get("version", "")),
                       str(raw.get("origin", "")))  # fmt: skip
        except (ValueError, TypeError, KeyError):
            return None  # a foreign or garbled message on our channel: ignore it


class RegistryNotifier(Protocol):
    async def publish(self, event: RegistryEvent) -> bool:
        """Send a notice; False (logged, never raised) when it could not be sent."""
        ...

    def subscribe(self) -> AsyncGenerator[RegistryEvent, None]:
        """Notices until cancelled; first a `subscribed` event, again after every reconnect.
        Never raises for backend outages: it waits and reconnects."""
        ...

    async def aclose(self) -> None: ...


class MemoryNotifier:
    """One process: every subscriber of this object gets every notice (a loopback)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[RegistryEvent]] = set()

    async def publish(self, event: RegistryEvent) -> bool:
        for queue in self._queues:
            if queue.full():  # a notice only means "reload": dropping old ones loses nothing
                queue.get_nowait()
            queue.put_nowait(event)
        return True

    async def subscribe(self) -> AsyncGenerator[RegistryEvent, None]:
        queue: asyncio.Queue[RegistryEvent] = asyncio.Queue(maxsize=16)
        self._queues.add(queue)
        try:
            yield RegistryEvent("subscribed")
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)

    async def aclose(self) -> None:
        self._queues.clear()


class RedisNotifier:
    """PUBLISH / SUBSCRIBE on `<prefix>registry`, with a subscriber that reconnects forever."""

    def __init__(
        self,
        url: str,
        prefix: str = "skillwarden:",
        *,
        timeout_s: float = 1.0,
        ping_s: float = 5.0,
        retry_max_s: float = 5.0,
    ) -> None:
        self.channel = f"{prefix}registry"
        self._ping_s = ping_s
        self._retry_max_s = retry_max_s
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        self._errors = (RedisError, OSError, TimeoutError)
        # No client-side retries: this module owns reconnecting, and an admin request that
        # publishes must not stall on a dead Redis.
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    async def publish(self, event: RegistryEvent) -> bool:
        try:
            await self._redis.publish(self.channel, event.encode())
        except self._errors as exc:
            log.warning(
                "registry notice for %s@%s not sent (redis: %s); other replicas pick the "
                "change up on their periodic reload", event.skill, event.version, exc,
            )  # fmt: skip
            return False
        return True

    async def subscribe(self) -> AsyncGenerator[RegistryEvent, None]:
        down_since: float | None = None
        delay = 0.1
        while True:  # ends only when the consumer is cancelled (app shutdown)
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if down_since is not None:
                    log.warning("registry notices resumed after %.1f s",
                                time.monotonic() - down_since)  # fmt: skip
                down_since, delay = None, 0.1
                yield RegistryEvent("subscribed")
                async for event in self._read(pubsub):
                    yield event
            except self._errors as exc:
                if down_since is None:  # once per outage, not once per retry
                    down_since = time.monotonic()
                    log.warning(
                        "registry notices unavailable (redis: %s); retrying, meanwhile "
                        "changes from other replicas arrive by the periodic reload", exc,
                    )  # fmt: skip
            finally:
                with contextlib.suppress(*self._errors):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)

    async def _read(self, pubsub: PubSub) -> AsyncGenerator[RegistryEvent, None]:
        # A silent peer (half-open TCP) raises nothing: ping when idle, and give up on the
        # connection when even the pong stays away for 3 ping periods.
        heard = time.monotonic()
        pinged = heard
        while True:
            message = await pubsub.get_message(timeout=min(1.0, self._ping_s))
            now = time.monotonic()
            if message is not None:
                heard = now
                if message["type"] == "message":
                    event = RegistryEvent.decode(message["data"])
                    if event is not None:
                        yield event
            if now - heard > 3 * self._ping_s:
                raise TimeoutError(f"no reply on the subscriber for {now - heard:.1f} s")
            if now - max(heard, pinged) >= self._ping_s:
                pinged = now
                await pubsub.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()


def open_notifier(
    url: str, prefix: str = "skillwarden:", *, timeout_s: float = 1.0
) -> RegistryNotifier:
    """`memory` -> in-process loopback; `redis://` / `rediss://` -> Redis pub/sub."""
    if url == "memory":
        return MemoryNotifier()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisNotifier(url, prefix, timeout_s=timeout_s)
    raise ValueError(f"unsupported notices URL: {url!r} (memory or redis://...)")


class RegistrySync:
    """What a publisher calls after a successful store write: reload here, tell the others."""

    def __init__(self, notifier: RegistryNotifier, reload: Callable[[], None]) -> None:
        self.notifier = notifier
        self._reload = reload
        self.reloads = 0  # observable in tests and logs

    def reload(self) -> None:
        self.reloads += 1
        self._reload()

    async def changed(self, skill: str, version: str) -> bool:
        self.reload()  # this replica at once, even when the notice cannot be sent
        return await self.notifier.publish(RegistryEvent("published", skill, version))


@asynccontextmanager
async def registry_sync(
    notifier: RegistryNotifier,
    reload: Callable[[], None],
    interval_s: float,
    *,
    ready_wait_s: float = 1.0,
) -> AsyncIterator[RegistrySync]:
    """Run the notice listener and the periodic full reload until the block ends.

    Waits up to ready_wait_s for the first subscription, so a replica that answers /healthz
    normally already hears notices; a down Redis only delays start-up by that much.
    """
    sync = RegistrySync(notifier, reload)
    ready = asyncio.Event()

    async def listen() -> None:
        while True:  # a bug in a backend must not silence notices for the process's life
            try:
                async for event in notifier.subscribe():
                    ready.set()
                    if event.kind == "published":
                        log.info("registry notice: %s@%s from replica %s",
                                 event.skill, event.version, event.origin)  # fmt: skip
                    sync.reload()
            except Exception:
                log.exception("registry notice listener failed; restarting in 1 s")
            await asyncio.sleep(1.0)

    async def periodic() -> None:
        while True:  # bounded by the app's lifetime: cancelled on exit
            await asyncio.sleep(interval_s)
            sync.reload()

    tasks = [asyncio.create_task(listen(), name="registry-notices"),
             asyncio.create_task(periodic(), name="registry-reload")]  # fmt: skip
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), ready_wait_s)
        yield sync
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await notifier.aclose()
