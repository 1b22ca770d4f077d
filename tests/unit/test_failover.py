"""send_with_failover with fake replies, a fake clock and a recorded sleep."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from gateway.errors import GatewayError
from gateway.pipeline.context import UpstreamAttempt
from gateway.upstream.breaker import BreakerConfig, Breakers
from gateway.upstream.client import (
    ProviderTarget,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from gateway.upstream.failover import (
    NoProviderAvailable,
    RetryPolicy,
    UpstreamFailure,
    parse_retry_after,
    send_with_failover,
)
from gateway.upstream.router import PlannedAttempt


@dataclass
class FakeReply:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b'{"error":{"type":"x","message":"m"}}'
    released: bool = False
    read: bool = False

    async def read_body(self, max_bytes: int) -> bytes:
        self.read = True
        self.released = True
        return self.body[:max_bytes]

    def release(self) -> None:
        self.released = True


Outcome = FakeReply | UpstreamError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, **scripts: list[Outcome]) -> None:
        self.scripts = scripts
        self.calls: list[tuple[str, str | None]] = []
        self.replies: list[FakeReply] = []
        self.sleeps: list[float] = []
        self.clock = Clock()
        self.breakers = Breakers(
            default=BreakerConfig(failures=3, cooldown_s=30.0), clock=self.clock
        )

    async def send_one(self, target: ProviderTarget, model: str | None) -> FakeReply:
        self.calls.append((target.name, model))
        outcome = self.scripts[target.name].pop(0)
        self.clock.now += 0.01
        if isinstance(outcome, UpstreamError):
            raise outcome
        self.replies.append(outcome)
        return outcome

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.now += seconds

    async def run(
        self, *providers: str, retries: int = 2, policy: RetryPolicy | None = None
    ) -> tuple[FakeReply, list[UpstreamAttempt]]:
        plan = [
            PlannedAttempt(
                ProviderTarget(p, f"http://{p}.test", "anthropic", "k"), "m-" + p, retries
            )
            for p in providers
        ]
        return await send_with_failover(
            plan,
            self.send_one,
            breakers=self.breakers,
            policy=policy or RetryPolicy(),
            sleep=self.sleep,
            clock=self.clock,
            rng=random.Random(0),
        )


def ok() -> FakeReply:
    return FakeReply(200, {"content-type": "application/json"}, b"{}")


def connect(p: str) -> UpstreamError:
    return UpstreamConnectError(p, 1.0, "cannot connect")


def summary(attempts: list[UpstreamAttempt]) -> list[tuple[str, int | None, str | None]]:
    return [(a.provider, a.status, a.error) for a in attempts]


async def test_first_answer_is_committed() -> None:
    h = Harness(a=[ok()])
    reply, attempts = await h.run("a", "b")
    assert reply.status == 200 and not reply.released
    assert summary(attempts) == [("a", 200, None)]
    assert h.calls == [("a", "m-a")]
    assert attempts[0].latency_ms == pytest.approx(10.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_client_errors_are_committed_not_retried(status: int) -> None:
    h = Harness(a=[FakeReply(status)])
    reply, attempts = await h.run("a", "b")
    assert reply.status == status and not reply.released
    assert summary(attempts) == [("a", status, None)]
    assert h.breakers.get("a").snapshot().consecutive_failures == 0


async def test_connect_error_retries_same_provider_with_backoff_then_fails_over() -> None:
    h = Harness(a=[connect("a"), connect("a"), connect("a")], b=[ok()])
    reply, attempts = await h.run("a", "b", retries=2)
    assert reply.status == 200
    assert [c[0] for c in h.calls] == ["a", "a", "a", "b"]
    assert summary(attempts)[-1] == ("b", 200, None)
    assert [e for _, _, e in summary(attempts)[:3]] == ["connect"] * 3
    # exponential with jitter: in [d/2, d] for d = 0.25, 0.5; no sleep before failing over
    assert len(h.sleeps) == 2
    assert 0.125 <= h.sleeps[0] <= 0.25 and 0.25 <= h.sleeps[1] <= 0.5


async def test_timeout_fails_over_at_once() -> None:
    h = Harness(a=[UpstreamTimeout("a", 5000.0, "first_byte")], b=[ok()])
    _, attempts = await h.run("a", "b")
    assert summary(attempts) == [("a", None, "timeout:first_byte"), ("b", 200, None)]
    assert attempts[0].latency_ms == 5000.0
    assert h.sleeps == []


async def test_dropped_before_head_is_retried() -> None:
    h = Harness(a=[UpstreamProtocolError("a", 1.0, "reset", False), ok()])
    reply, attempts = await h.run("a")
    assert reply.status == 200 and len(attempts) == 2


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 529])
async def test_retryable_statuses_are_read_released_and_retried(status: int) -> None:
    bad = FakeReply(status)
    h = Harness(a=[bad, ok()])
    reply, attempts = await h.run("a")
    assert reply.status == 200
    assert bad.read and bad.released
    assert summary(attempts) == [("a", status, f"http_{status}"), ("a", 200, None)]


async def test_short_retry_after_is_honoured_on_the_same_provider() -> None:
    h = Harness(a=[FakeReply(429, {"retry-after": "1.5"}), ok()])
    _, attempts = await h.run("a", "b")
    assert h.sleeps == [1.5]
    assert [a.provider for a in attempts] == ["a", "a"]


async def test_retry_after_ms_wins() -> None:
    h = Harness(a=[FakeReply(429, {"retry-after-ms": "120", "retry-after": "1"}), ok()])
    await h.run("a")
    assert h.sleeps == [0.12]


async def test_long_retry_after_moves_on_without_sleeping() -> None:
    h = Harness(a=[FakeReply(429, {"retry-after": "30"})], b=[ok()])
    _, attempts = await h.run("a", "b")
    assert h.sleeps == []
    assert summary(attempts) == [("a", 429, "http_429"), ("b", 200, None)]


async def test_all_http_failures_keep_the_last_upstream_error() -> None:
    h = Harness(
        a=[FakeReply(503, body=b"a-down")],
        b=[FakeReply(429, {"retry-after": "60"}, b'{"error":"slow down"}')],
    )
    with pytest.raises(NoProviderAvailable) as err:
        await h.run("a", "b", retries=0)
    e = err.value
    assert isinstance(e, GatewayError) and (e.code, e.status) == ("no_provider_available", 503)
    assert e.upstream == UpstreamFailure("b", 429, {"retry-after": "60"}, b'{"error":"slow down"}')
    assert summary(e.attempts) == [("a", 503, "http_503"), ("b", 429, "http_429")]
    assert e.message == "no provider available: 'a' answered HTTP 503; 'b' answered HTTP 429"
    assert all(r.released for r in h.replies)


async def test_no_reply_at_all_is_a_plain_503() -> None:
    h = Harness(a=[connect("a")], b=[UpstreamTimeout("b", 1.0, "connect")])
    with pytest.raises(NoProviderAvailable) as err:
        await h.run("a", "b", retries=0)
    assert err.value.upstream is None and err.value.headers == {}
    assert summary(err.value.attempts) == [("a", None, "connect"), ("b", None, "timeout:connect")]
    assert err.value.message == ("no provider available: 'a' unreachable; 'b' timed out (connect)")


async def test_empty_plan() -> None:
    h = Harness()
    with pytest.raises(NoProviderAvailable, match="no route planned a provider"):
        await h.run()


async def test_breaker_opens_skips_half_opens_and_closes() -> None:
    h = Harness(a=[connect("a")] * 3 + [ok()], b=[ok(), ok(), ok()])
    _, attempts = await h.run("a", "b", retries=5)  # threshold 3 stops the retries early
    assert summary(attempts) == [("a", None, "connect")] * 3 + [("b", 200, None)]
    assert len(h.sleeps) == 2  # no backoff before a retry the open breaker would refuse
    assert h.breakers.get("a").state == "open"
    _, attempts = await h.run("a", "b")
    assert summary(attempts) == [("a", None, "circuit_open"), ("b", 200, None)]
    h.clock.now += 30
    assert h.breakers.get("a").state == "half_open"
    _, attempts = await h.run("a", "b")
    assert summary(attempts) == [("a", 200, None)]
    assert h.breakers.get("a").state == "closed"


async def test_every_circuit_open_answers_503_with_retry_after() -> None:
    h = Harness(a=[connect("a")] * 3)
    with pytest.raises(NoProviderAvailable):
        await h.run("a", retries=5)
    h.clock.now += 10
    with pytest.raises(NoProviderAvailable) as err:
        await h.run("a")
    assert summary(err.value.attempts) == [("a", None, "circuit_open")]
    assert "'a' out of rotation (circuit open)" in err.value.message
    assert err.value.retry_after_s == pytest.approx(20.0)
    assert err.value.headers == {"retry-after": "20"}


async def test_max_attempts_bounds_the_whole_plan() -> None:
    h = Harness(a=[FakeReply(500)] * 5, b=[FakeReply(500)] * 5)
    h.breakers = Breakers(default=BreakerConfig(failures=100), clock=h.clock)
    with pytest.raises(NoProviderAvailable) as err:
        await h.run("a", "b", retries=4, policy=RetryPolicy(max_attempts=7))
    assert len(err.value.attempts) == 7


async def test_attempts_list_is_filled_in_place_even_when_cancelled() -> None:
    h = Harness(a=[connect("a"), ok()])
    attempts: list[UpstreamAttempt] = []

    async def never(_: float) -> None:
        await asyncio.Event().wait()

    plan = [PlannedAttempt(ProviderTarget("a", "http://a.test", "anthropic", "k"), None, 2)]
    task = asyncio.ensure_future(
        send_with_failover(plan, h.send_one, breakers=h.breakers, attempts=attempts, sleep=never)
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert summary(attempts) == [("a", None, "connect")]


async def test_cancelled_half_open_probe_frees_the_slot() -> None:
    h = Harness(a=[connect("a")] * 3)
    with pytest.raises(NoProviderAvailable):
        await h.run("a", retries=5)
    h.clock.now += 30
    started = asyncio.Event()

    async def hang(target: ProviderTarget, model: str | None) -> FakeReply:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError

    plan = [PlannedAttempt(ProviderTarget("a", "http://a.test", "anthropic", "k"), None, 0)]
    task = asyncio.ensure_future(send_with_failover(plan, hang, breakers=h.breakers))
    await started.wait()
    assert not h.breakers.get("a").try_acquire()  # the probe is out
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.breakers.get("a").try_acquire()


async def test_error_body_is_bounded() -> None:
    h = Harness(a=[FakeReply(500, body=b"x" * 100)])
    with pytest.raises(NoProviderAvailable) as err:
        await h.run("a", retries=0, policy=RetryPolicy(error_body_max=10))
    assert err.value.upstream is not None and err.value.upstream.body == b"x" * 10


def test_parse_retry_after() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert parse_retry_after({"retry-after-ms": "bad", "retry-after": "2"}) == 2.0
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after({"retry-after": date}, now=1445412480.0) == 10.0
