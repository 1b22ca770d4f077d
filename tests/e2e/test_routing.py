"""Routing and failover through the gateway: the client sees one normal response.

The primary provider refuses the connection, times out before the first byte, answers 429 with
Retry-After, or 503; the backup answers. The audit record lists every attempt. The breaker
opens after N failures (the primary is skipped, recorded as circuit_open) and half-opens after
its cool-down. Aliases rewrite only the model. Every provider failing: the last upstream
error (status kept), or 503 no_provider_available when none answered (timeouts included).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.e2e.conftest import embedded_settings
from tests.e2e.proxy_support import AGENT_KEY, MSG, PROVIDER_KEY, audit_records
from tests.e2e.upstreams import ScriptedAnthropic, anthropic_error, anthropic_message, json_reply
from tests.e2e.upstreams.fixtures import refused_url

pytestmark = pytest.mark.e2e
__all__ = ["refused_url"]


@pytest.fixture
async def pair() -> AsyncIterator[tuple[ScriptedAnthropic, ScriptedAnthropic]]:
    async with ScriptedAnthropic() as primary, ScriptedAnthropic() as backup:
        yield primary, backup


def routed(
    tmp: Path,
    primary_url: str,
    backup_url: str,
    backup: dict[str, Any] | None = None,
    **primary: Any,
) -> Any:
    providers = {
        "primary": {"type": "anthropic", "base_url": primary_url, "api_key": PROVIDER_KEY},
        "backup": {"type": "anthropic", "base_url": backup_url, "api_key": PROVIDER_KEY},
    }
    providers["primary"].update(primary)
    providers["backup"].update(backup or {})
    return embedded_settings(
        tmp / "data",
        providers=providers,
        routes=[{"provider": "primary", "priority": 0}, {"provider": "backup", "priority": 1}],
        consumers={"e2e-agent": {"api_keys": [AGENT_KEY]}},
    )


def client(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=url, api_key=AGENT_KEY, default_headers={"X-Skill": "code-review"}, max_retries=0
    )


def outcomes(attempts: Sequence[Mapping[str, Any]]) -> list[tuple[str, int | None, str | None]]:
    return [(a["provider"], a["status"], a["error"]) for a in attempts]


async def ask(url: str) -> anthropic.types.Message:
    async with client(url) as sdk:
        return await sdk.messages.create(model="m", max_tokens=5, messages=MSG)


async def test_failover_when_the_primary_refuses_connections(
    tmp_path: Path,
    start_gateway: Any,
    pair: tuple[ScriptedAnthropic, ScriptedAnthropic],
    refused_url: str,
) -> None:
    _, backup = pair
    settings = routed(tmp_path, refused_url, backup.url, max_retries=1)
    backup.enqueue(json_reply(anthropic_message("from backup")))
    reply = await ask(start_gateway(settings))
    assert reply.content[0].text == "from backup"  # type: ignore[union-attr]
    (record,) = await audit_records(settings, 1)
    assert record.status == 200 and record.provider == "backup"
    assert outcomes(record.upstream_attempts) == [
        ("primary", None, "connect"),
        ("primary", None, "connect"),  # max_retries 1: one retry after a short backoff
        ("backup", 200, None),
    ]


async def test_failover_when_the_primary_times_out_before_the_first_byte(
    tmp_path: Path, start_gateway: Any, pair: tuple[ScriptedAnthropic, ScriptedAnthropic]
) -> None:
    primary, backup = pair
    settings = routed(tmp_path, primary.url, backup.url, timeout_s=0.3, max_retries=2)
    primary.enqueue(json_reply(anthropic_message("too late")).slow(3.0))
    started = time.monotonic()
    reply = await ask(start_gateway(settings))
    assert reply.content[0].text != "too late"  # type: ignore[union-attr]
    assert time.monotonic() - started < 2.5  # a timeout moves on at once, no retry
    (record,) = await audit_records(settings, 1)
    [(p1, s1, e1), (p2, s2, e2)] = outcomes(record.upstream_attempts)
    assert (p1, s1) == ("primary", None) and e1 is not None and e1.startswith("timeout")
    assert (p2, s2, e2) == ("backup", 200, None)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        # Over the 2 s cap: not waited for, straight to the backup.
        ("30", [("primary", 429, "http_429"), ("backup", 200, None)]),
        # Within the cap: waited for, then the same provider again (it answers this time).
        ("1", [("primary", 429, "http_429"), ("primary", 200, None)]),
    ],
    ids=["long-retry-after", "short-retry-after"],
)
async def test_429_with_retry_after(
    tmp_path: Path,
    start_gateway: Any,
    pair: tuple[ScriptedAnthropic, ScriptedAnthropic],
    retry_after: str,
    expected: list[tuple[str, int | None, str | None]],
) -> None:
    primary, backup = pair
    settings = routed(tmp_path, primary.url, backup.url, max_retries=1)
    primary.enqueue(anthropic_error(429, "slow down", retry_after=int(retry_after)))
    url = start_gateway(settings)
    started = time.monotonic()
    await ask(url)
    elapsed = time.monotonic() - started
    assert elapsed >= 1.0 if retry_after == "1" else elapsed < 1.0
    (record,) = await audit_records(settings, 1)
    assert record.status == 200 and outcomes(record.upstream_attempts) == expected


async def test_503_is_retried_then_failed_over(
    tmp_path: Path, start_gateway: Any, pair: tuple[ScriptedAnthropic, ScriptedAnthropic]
) -> None:
    primary, backup = pair
    settings = routed(tmp_path, primary.url, backup.url, max_retries=1)
    primary.enqueue(anthropic_error(503, "down"), anthropic_error(503, "down"))
    backup.enqueue(json_reply(anthropic_message("from backup")))
    reply = await ask(start_gateway(settings))
    assert reply.content[0].text == "from backup"  # type: ignore[union-attr]
    (record,) = await audit_records(settings, 1)
    assert outcomes(record.upstream_attempts) == [
        ("primary", 503, "http_503"),
        ("primary", 503, "http_503"),
        ("backup", 200, None),
    ]


async def test_breaker_opens_then_half_opens(
    tmp_path: Path, start_gateway: Any, pair: tuple[ScriptedAnthropic, ScriptedAnthropic]
) -> None:
    primary, backup = pair
    settings = routed(
        tmp_path, primary.url, backup.url, max_retries=0, breaker_failures=2, breaker_cooldown_s=1.0
    )
    url = start_gateway(settings)
    primary.enqueue(anthropic_error(503, "down"), anthropic_error(503, "down"))
    await ask(url)
    await ask(url)  # second consecutive failure: the circuit opens
    assert len(primary.requests) == 2
    await ask(url)  # skipped: the primary is out of rotation
    assert len(primary.requests) == 2
    records = await audit_records(settings, 3)
    assert outcomes(records[2].upstream_attempts) == [
        ("primary", None, "circuit_open"),
        ("backup", 200, None),
    ]
    # After the cool-down one probe goes through; it succeeds, the circuit closes.
    asked, deadline = 3, time.monotonic() + 5
    await asyncio.sleep(1.0)
    while len(primary.requests) == 2:
        assert time.monotonic() < deadline, "the breaker never half-opened"
        await ask(url)
        asked += 1
        await asyncio.sleep(0.1)
    records = await audit_records(settings, asked)
    assert outcomes(records[-1].upstream_attempts) == [("primary", 200, None)]
    await ask(url)
    assert len(primary.requests) == 4  # closed again: the primary takes traffic


async def test_every_provider_failing_shows_the_last_upstream_error(
    tmp_path: Path, start_gateway: Any, pair: tuple[ScriptedAnthropic, ScriptedAnthropic]
) -> None:
    primary, backup = pair
    quick = {"timeout_s": 0.2, "max_retries": 0}
    settings = routed(tmp_path, primary.url, backup.url, quick, **quick)
    primary.enqueue(json_reply(anthropic_message("late")).slow(2.0))
    backup.enqueue(anthropic_error(500, "broken"))
    async with client(start_gateway(settings)) as sdk:
        with pytest.raises(anthropic.InternalServerError) as raised:
            await sdk.messages.create(model="m", max_tokens=5, messages=MSG)
    # The last HTTP error a provider gave is what the client sees, in its format, status kept.
    assert raised.value.status_code == 500
    (record,) = await audit_records(settings, 1)
    [(p1, _, e1), (p2, s2, _)] = outcomes(record.upstream_attempts)
    assert (p1, p2, s2) == ("primary", "backup", 500) and e1 is not None


async def test_timeouts_everywhere_are_503_no_provider_available(
    tmp_path: Path, start_gateway: Any, pair: tuple[ScriptedAnthropic, ScriptedAnthropic]
) -> None:
    primary, backup = pair
    quick = {"timeout_s": 0.2, "max_retries": 0}
    settings = routed(tmp_path, primary.url, primary.url, quick, **quick)
    primary.enqueue(*[json_reply(anthropic_message("late")).slow(2.0)] * 2)
    async with client(start_gateway(settings)) as sdk:
        with pytest.raises(anthropic.InternalServerError, match="timed out") as raised:
            await sdk.messages.create(model="m", max_tokens=5, messages=MSG)
    # PRODUCT.md: no_provider_available is 503 (a timeout does not make it a 504).
    assert raised.value.status_code == 503
    assert "no provider available" in raised.value.message
    assert backup.requests == []


async def test_alias_rewrites_only_the_model(
    tmp_path: Path, start_gateway: Any, pair: tuple[ScriptedAnthropic, ScriptedAnthropic]
) -> None:
    primary, _ = pair
    settings = embedded_settings(
        tmp_path / "data",
        providers={"p": {"type": "anthropic", "base_url": primary.url, "api_key": PROVIDER_KEY}},
        skills={
            "code-review": {
                "routes": [
                    {"provider": "p", "models": ["claude-*"], "aliases": {"fast": "claude-h"}}
                ]
            }
        },
        consumers={"e2e-agent": {"api_keys": [AGENT_KEY]}},
    )
    url = start_gateway(settings)
    async with client(url) as sdk:
        await sdk.messages.create(model="fast", max_tokens=5, messages=MSG)
        with pytest.raises(anthropic.PermissionDeniedError, match="not allowed"):
            await sdk.messages.create(model="gpt-4o", max_tokens=5, messages=MSG)
    sent = primary.last.json()
    assert sent == {"model": "claude-h", "max_tokens": 5, "messages": MSG}
    first, second = await audit_records(settings, 2)
    assert first.model == "claude-h" and "model alias: fast -> claude-h" in first.reasons
    assert second.status == 403 and len(primary.requests) == 1
