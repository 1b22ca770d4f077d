"""The attempt loop: retries with backoff, failover down the route plan, circuit breakers.

Contract with the caller (DESIGN.md §4, no failover after the first byte):
- ``send_one(target, model)`` makes ONE attempt and returns once the response head is in
  (``UpstreamClient.send``), or raises the client's ``UpstreamError``s. Nothing of its body
  has reached the client yet.
- A reply this loop returns is *committed*: the caller streams it, and whatever happens after
  (a stream broken mid-way) is never retried here. Every reply the loop does not return is
  read (bounded) and released, so its connection goes back to the pool.

Per attempt, what happens next:
- 2xx, 3xx and 4xx other than 408/429: committed (the provider answered; a 400 is the
  client's problem and would be the same anywhere).
- connect error, connection dropped before the response head, 408, 5xx (529 too), 429:
  retry the same provider after exponential backoff with jitter, up to its ``max_retries``;
  a ``Retry-After`` (or OpenAI's ``retry-after-ms``) up to ``retry_after_cap_s`` replaces the
  backoff; a longer one moves on to the next provider at once, without sleeping.
- timeouts: move on at once (the timeout already spent its phase's budget; retrying the same
  slow provider would multiply the client's wait).
- a provider whose breaker is open is skipped (recorded as error ``circuit_open``).
Failures (not 4xx answers) count towards the provider's breaker; a committed reply closes it.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from gateway.errors import GatewayError
from gateway.pipeline.context import UpstreamAttempt
from gateway.upstream.breaker import Breakers
from gateway.upstream.client import ProviderTarget, UpstreamError, UpstreamTimeout
from gateway.upstream.router import PlannedAttempt

__all__ = [
    "NoProviderAvailable",
    "ReplyLike",
    "RetryPolicy",
    "UpstreamFailure",
    "parse_retry_after",
    "send_with_failover",
]


class ReplyLike(Protocol):
    """What the loop needs of a reply (UpstreamReply fits; tests use fakes)."""

    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    async def read_body(self, max_bytes: int) -> bytes: ...
    def release(self) -> None: ...


R = TypeVar("R", bound=ReplyLike)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    backoff_initial_s: float = 0.25  # first retry of a provider; doubles per retry
    backoff_max_s: float = 2.0
    jitter: float = 0.5  # a delay d becomes d * (1 - jitter * u), u uniform in [0, 1)
    retry_after_cap_s: float = 2.0  # longer Retry-After: fail over instead of waiting
    max_attempts: int = 10  # over the whole plan: bounds one request's work
    error_body_max: int = 64 * 1024  # failed replies are read up to this, then released

    def backoff(self, retry: int, rng: random.Random) -> float:
        base = min(self.backoff_max_s, self.backoff_initial_s * (2.0**retry))
        return base * (1.0 - self.jitter * rng.random())


RETRYABLE_STATUSES = frozenset({408, 429})


def is_retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUSES


@dataclass(frozen=True, slots=True)
class UpstreamFailure:
    """The last upstream HTTP error, kept so the caller can re-render it in the client's
    format (status kept, body re-shaped; e.g. a 429 with its retry-after)."""

    provider: str
    status: int
    headers: Mapping[str, str]
    body: bytes


class NoProviderAvailable(GatewayError):
    """Every planned provider failed, was skipped, or the attempt bound was reached.

    As a GatewayError it renders as 503 ``no_provider_available``. When ``upstream`` is set
    (some attempt got an HTTP error reply), the caller should prefer re-rendering it.
    """

    def __init__(
        self,
        attempts: Sequence[UpstreamAttempt],
        upstream: UpstreamFailure | None,
        retry_after_s: float | None,
    ) -> None:
        headers = {"retry-after": str(math.ceil(retry_after_s))} if retry_after_s else None
        super().__init__(
            "no_provider_available",
            503,
            f"no provider available: {_outcomes(attempts)}",
            rule="routes",
            headers=headers,
        )
        self.attempts = list(attempts)
        self.upstream = upstream
        self.retry_after_s = retry_after_s


def _outcomes(attempts: Sequence[UpstreamAttempt]) -> str:
    """Per provider, its last outcome in words: 'anthropic' unreachable (3 attempts); ..."""
    last: dict[str, tuple[str, int]] = {}
    for a in attempts:
        tries = last.get(a.provider, ("", 0))[1] + (a.error != "circuit_open")
        last[a.provider] = (_WORDS.get(a.error or "", "") or _words(a.error), tries)
    if not last:
        return "no route planned a provider"
    parts = []
    for name, (what, tries) in last.items():
        parts.append(f"'{name}' {what}" + (f" ({tries} attempts)" if tries > 1 else ""))
    return "; ".join(parts)


_WORDS = {
    "connect": "unreachable",
    "protocol": "dropped the connection",
    "circuit_open": "out of rotation (circuit open)",
}


def _words(error: str | None) -> str:
    if error and error.startswith("http_"):
        return f"answered HTTP {error[5:]}"
    if error and error.startswith("timeout:"):
        return f"timed out ({error[8:].replace('_', ' ')})"
    return error or "failed"


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date); None if
    absent or unreadable. Header names are lower-case (UpstreamReply.headers)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


async def send_with_failover(
    plan: Sequence[PlannedAttempt],
    send_one: Callable[[ProviderTarget, str | None], Awaitable[R]],
    *,
    breakers: Breakers,
    policy: RetryPolicy = RetryPolicy(),
    attempts: list[UpstreamAttempt] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.perf_counter,
    rng: random.Random | None = None,
) -> tuple[R, list[UpstreamAttempt]]:
    """Try the plan in order; return the first committed reply and every attempt made.

    ``attempts`` (e.g. ``ctx.attempts``) is appended to in place, so a cancelled request
    still has its attempts for the audit record. Raises NoProviderAvailable when none is left.
    """
    attempts = [] if attempts is None else attempts
    rand = rng or random.Random()
    last: UpstreamFailure | None = None
    made = 0
    for step in plan:
        breaker = breakers.get(step.provider)
        retry = 0
        while made < policy.max_attempts:
            if not breaker.try_acquire():
                attempts.append(UpstreamAttempt(step.provider, None, "circuit_open", 0.0))
                break
            made += 1
            started = clock()
            try:
                reply = await send_one(step.target, step.model)
            except UpstreamError as exc:
                breaker.record_failure()
                attempts.append(UpstreamAttempt(step.provider, None, exc.code, exc.elapsed_ms))
                wait: float | None = None
                move_on = isinstance(exc, UpstreamTimeout)
            except BaseException:
                breaker.abandon()  # cancelled or a bug: no verdict on the provider
                raise
            else:
                latency = (clock() - started) * 1000.0
                if not is_retryable(reply.status):
                    breaker.record_success()
                    attempts.append(UpstreamAttempt(step.provider, reply.status, None, latency))
                    return reply, attempts
                breaker.record_failure()
                error = f"http_{reply.status}"
                attempts.append(UpstreamAttempt(step.provider, reply.status, error, latency))
                last = await _consume(step.provider, reply, policy.error_body_max)
                wait = parse_retry_after(last.headers)
                move_on = wait is not None and wait > policy.retry_after_cap_s
            if move_on or retry >= step.max_retries or breaker.state == "open":
                break  # no sleep for a retry the breaker would refuse anyway
            await sleep(wait if wait is not None else policy.backoff(retry, rand))
            retry += 1
    raise NoProviderAvailable(attempts, last, _reopen_in(plan, breakers, attempts))


async def _consume(provider: str, reply: ReplyLike, max_bytes: int) -> UpstreamFailure:
    """Read a failed reply's body (bounded) and release it: read to the end, its connection
    returns to the pool; cut short, it is closed."""
    status, headers = reply.status, dict(reply.headers)
    try:
        body = await reply.read_body(max_bytes)
    except UpstreamError:
        body = b""  # oversize or broken error body: the status alone is enough
    finally:
        reply.release()  # idempotent; read_body already released on every path it completes
    return UpstreamFailure(provider, status, headers, body)


def _reopen_in(
    plan: Sequence[PlannedAttempt], breakers: Breakers, attempts: Sequence[UpstreamAttempt]
) -> float | None:
    """When every provider was skipped for an open circuit: seconds until the first one lets a
    probe through (a Retry-After for the 503)."""
    if not plan or any(a.error != "circuit_open" for a in attempts):
        return None
    waits = [breakers.get(s.provider).snapshot().retry_in_s for s in plan]
    return max(1.0, min(waits))
