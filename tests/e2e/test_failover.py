"""Routing and failover over real sockets: UpstreamClient against scripted providers.

The first provider refuses the connection, times out before the first byte, answers 429 with
Retry-After, or 503; the second answers; the caller gets one normal reply. Every attempt is
recorded, failed replies go back to the pool (or are closed), the breaker opens and half-opens.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from gateway.formats.anthropic_messages.errors import rerender_upstream_error
from gateway.pipeline.context import UpstreamAttempt
from gateway.runtime import provider_target
from gateway.settings import Settings
from gateway.upstream.breaker import Breakers
from gateway.upstream.client import ProviderTarget, UpstreamClient, UpstreamProtocolError
from gateway.upstream.failover import NoProviderAvailable, RetryPolicy, send_with_failover
from gateway.upstream.router import Router, with_model
from tests.e2e.upstreams import (
    ScriptedAnthropic,
    anthropic_error,
    anthropic_message,
    anthropic_text_stream,
    json_reply,
    sse_reply,
)

pytestmark = pytest.mark.e2e

KEY = "sk-ant-provider-0123456789"
HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
BODY: dict[str, Any] = {
    "model": "claude-opus-4-8",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi"}],
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Gateway:
    """What forward.py will do, reduced: plan, send_with_failover, read the committed reply."""

    def __init__(self, settings: Settings, clock: FakeClock) -> None:
        targets = {n: provider_target(n, p) for n, p in settings.providers.items()}
        reachable = {n: t for n, t in targets.items() if t is not None}
        self.router = Router(settings, reachable)
        self.breakers = Breakers.from_providers(settings.providers, clock=clock)
        self.client = UpstreamClient(reachable.values())
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)  # recorded, not slept: keeps the test fast

    async def forward(
        self, body: dict[str, Any] = BODY, policy: RetryPolicy | None = None
    ) -> tuple[Any, list[UpstreamAttempt]]:
        raw = orjson.dumps(body)
        plan = self.router.plan("review", "anthropic", body["model"])

        async def send_one(target: ProviderTarget, model: str | None) -> Any:
            data = raw if model in (None, body["model"]) else with_model(body, model)
            return await self.client.send(target, "/v1/messages", data, HEADERS)

        return await send_with_failover(
            plan, send_one, breakers=self.breakers, policy=policy or RetryPolicy(), sleep=self.sleep
        )


def settings_for(*urls: str, **provider: Any) -> Settings:
    providers = {
        f"p{i}": {"type": "anthropic", "base_url": url, "api_key": KEY, **provider}
        for i, url in enumerate(urls)
    }
    return Settings.model_validate({"providers": providers})


@pytest.fixture
async def a() -> AsyncIterator[ScriptedAnthropic]:
    async with ScriptedAnthropic() as up:
        yield up


@pytest.fixture
async def b() -> AsyncIterator[ScriptedAnthropic]:
    async with ScriptedAnthropic() as up:
        yield up


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(clock: FakeClock) -> AsyncIterator[Callable[[Settings], Gateway]]:
    made: list[Gateway] = []

    def build(settings: Settings) -> Gateway:
        gw = Gateway(settings, clock)
        made.append(gw)
        return gw

    yield build
    for gw in made:
        await gw.client.close()


def summary(attempts: list[UpstreamAttempt]) -> list[tuple[str, int | None, str | None]]:
    return [(x.provider, x.status, x.error) for x in attempts]


async def read_json(reply: Any) -> Any:
    return orjson.loads(await reply.read_body(1 << 20))


async def test_refused_connection_fails_over(
    make: Callable[[Settings], Gateway], refused_url: str, b: ScriptedAnthropic
) -> None:
    gw = make(settings_for(refused_url, b.url, max_retries=1))
    await gw.client.start()
    reply, attempts = await gw.forward()
    assert reply.status == 200 and reply.provider == "p1"
    assert (await read_json(reply))["type"] == "message"
    assert summary(attempts) == [
        ("p0", None, "connect"),
        ("p0", None, "connect"),
        ("p1", 200, None),
    ]
    assert len(gw.sleeps) == 1  # one backoff between the two tries of p0, none before p1
    assert len(b.requests) == 1


async def test_timeout_before_first_byte_fails_over(
    make: Callable[[Settings], Gateway], a: ScriptedAnthropic, b: ScriptedAnthropic
) -> None:
    a.enqueue(anthropic_error(500).slow(2.0))
    gw = make(settings_for(a.url, b.url, timeout_s=0.3))
    await gw.client.start()
    started = time.perf_counter()
    reply, attempts = await gw.forward()
    assert time.perf_counter() - started < 1.5
    assert summary(attempts) == [("p0", None, "timeout:first_byte"), ("p1", 200, None)]
    assert attempts[0].latency_ms >= 250
    assert (await read_json(reply))["type"] == "message"
    assert gw.sleeps == []


async def test_short_retry_after_retries_the_same_provider_on_a_pooled_connection(
    make: Callable[[Settings], Gateway], a: ScriptedAnthropic, b: ScriptedAnthropic
) -> None:
    a.enqueue(anthropic_error(429, "slow down", retry_after=1))
    gw = make(settings_for(a.url, b.url))
    await gw.client.start()
    reply, attempts = await gw.forward()
    assert summary(attempts) == [("p0", 429, "http_429"), ("p0", 200, None)]
    assert gw.sleeps == [1.0]
    await reply.read_body(1 << 20)
    assert len(a.requests) == 2 and a.connections_opened == 1  # the 429 was read and pooled
    assert b.requests == []


async def test_long_retry_after_moves_on_without_sleeping(
    make: Callable[[Settings], Gateway], a: ScriptedAnthropic, b: ScriptedAnthropic
) -> None:
    a.enqueue(anthropic_error(429, "quota", retry_after=30))
    gw = make(settings_for(a.url, b.url))
    await gw.client.start()
    reply, attempts = await gw.forward()
    assert summary(attempts) == [("p0", 429, "http_429"), ("p1", 200, None)]
    assert gw.sleeps == []
    await reply.read_body(1 << 20)


@pytest.mark.parametrize("status", [503, 529, 500])
async def test_5xx_retried_then_failed_over(
    make: Callable[[Settings], Gateway], a: ScriptedAnthropic, b: ScriptedAnthropic, status: int
) -> None:
    a.enqueue(anthropic_error(status), anthropic_error(status))
    gw = make(settings_for(a.url, b.url, max_retries=1))
    await gw.client.start()
    reply, attempts = await gw.forward()
    err = f"http_{status}"
    assert summary(attempts) == [("p0", status, err), ("p0", status, err), ("p1", 200, None)]
    await reply.read_body(1 << 20)
    assert a.connections_opened == 1  # both error bodies were read: the connection was reused


async def test_committed_stream_is_never_retried_after_the_first_byte(
    make: Callable[[Settings], Gateway], a: ScriptedAnthropic, b: ScriptedAnthropic
) -> None:
    a.enqueue(sse_reply(anthropic_text_stream("hello there", split_into=4)).dropped(after=2))
    gw = make(settings_for(a.url, b.url))
    await gw.client.start()
    reply, attempts = await gw.forward({**BODY, "stream": True})
    assert reply.is_stream and summary(attempts) == [("p0", 200, None)]
    chunks = []
    with pytest.raises(UpstreamProtocolError):
        async for chunk in reply:
            chunks.append(chunk)
    assert chunks and b.requests == []  # the loop is done: no failover mid-stream


async def test_every_provider_failing_keeps_the_last_upstream_error(
    make: Callable[[Settings], Gateway], a: ScriptedAnthropic, b: ScriptedAnthropic
) -> None:
    a.enqueue(anthropic_error(503, "a is down"))
    b.enqueue(anthropic_error(529, "b is overloaded"))
    gw = make(settings_for(a.url, b.url, max_retries=0))
    await gw.client.start()
    with pytest.raises(NoProviderAvailable) as err:
        await gw.forward()
    up = err.value.upstream
    assert up is not None and (up.provider, up.status) == ("p1", 529)
    shaped = orjson.loads(rerender_upstream_error(up.status, up.body))
    assert shaped["error"] == {"type": "overloaded_error", "message": "b is overloaded"}
    assert a.connections_opened == 1 and b.connections_opened == 1


async def test_nothing_reachable_is_503_no_provider_available(
    make: Callable[[Settings], Gateway], refused_url: str
) -> None:
    gw = make(settings_for(refused_url, max_retries=0))
    await gw.client.start()
    with pytest.raises(NoProviderAvailable) as err:
        await gw.forward()
    e = err.value
    assert (e.code, e.status, e.upstream) == ("no_provider_available", 503, None)
    assert summary(e.attempts) == [("p0", None, "connect")]
    assert e.message == "no provider available: 'p0' unreachable"


async def test_breaker_opens_skips_half_opens_and_closes(
    make: Callable[[Settings], Gateway],
    a: ScriptedAnthropic,
    b: ScriptedAnthropic,
    clock: FakeClock,
) -> None:
    a.enqueue(anthropic_error(503), anthropic_error(503))
    s = settings_for(a.url, b.url, max_retries=0, breaker_failures=2, breaker_cooldown_s=30)
    gw = make(s)
    await gw.client.start()
    for _ in range(2):
        reply, _ = await gw.forward()
        await reply.read_body(1 << 20)
    assert gw.breakers.snapshot()["p0"].state == "open"
    reply, attempts = await gw.forward()  # p0 is out of rotation: not even contacted
    await reply.read_body(1 << 20)
    assert summary(attempts) == [("p0", None, "circuit_open"), ("p1", 200, None)]
    assert len(a.requests) == 2
    clock.now += 30
    assert gw.breakers.snapshot()["p0"].state == "half_open"
    reply, attempts = await gw.forward()  # the probe: p0 answers again
    await reply.read_body(1 << 20)
    assert summary(attempts) == [("p0", 200, None)]
    assert gw.breakers.snapshot()["p0"].state == "closed"
    assert len(b.requests) == 3


async def test_aliases_rewrite_the_model_for_that_provider_only(
    make: Callable[[Settings], Gateway], a: ScriptedAnthropic, b: ScriptedAnthropic
) -> None:
    a.enqueue(anthropic_error(503))
    b.enqueue(json_reply(anthropic_message("fine", model="claude-haiku-4-5")))
    routes = [
        {"provider": "p0", "models": ["claude-*"]},
        {"provider": "p1", "priority": 1, "aliases": {"claude-opus-4-8": "claude-haiku-4-5"}},
    ]
    s = settings_for(a.url, b.url, max_retries=0)
    s = Settings.model_validate({**s.model_dump(), "skills": {"review": {"routes": routes}}})
    gw = make(s)
    await gw.client.start()
    reply, _ = await gw.forward()
    await reply.read_body(1 << 20)
    assert a.last.json()["model"] == "claude-opus-4-8"
    sent = b.last.json()
    assert sent == {**BODY, "model": "claude-haiku-4-5"}
    assert list(sent) == list(BODY)
