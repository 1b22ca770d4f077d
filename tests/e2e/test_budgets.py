"""Budgets through the gateway: reserve before forwarding, settle after, on memory and Redis.

50 concurrent requests against a remaining budget of 10,000 tokens admit at most 10; the rest
are 429 budget_exceeded with Retry-After; the settled total stays within the budget and the
counters equal the sum of the audit records. Redis stopped mid-test: budgeted skills get 503
budget_unavailable (and the metric counts it), unbudgeted skills still work; Redis back: the
budget works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
import redis
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.settings import Settings
from gateway.state.counters import Counters, Limit, open_counters
from tests.e2e.proxy_support import AGENT_KEY, MSG, audit_records, stack_settings, upstreams
from tests.e2e.upstreams import (
    ScriptedAnthropic,
    ScriptedOpenAI,
    anthropic_message,
    anthropic_text_stream,
    json_reply,
    openai_completion,
    sse_reply,
)

pytestmark = pytest.mark.e2e
__all__ = ["upstreams"]

REDIS_URL = "redis://127.0.0.1:6379/0"
SKILL = "code-review"
BUDGET = 10_000
LIMIT = Limit(SKILL, "day", "tokens", BUDGET)
HEADERS = {"x-api-key": AGENT_KEY, "x-skill": SKILL, "content-type": "application/json"}


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A fresh key prefix on the shared Redis; every key under it is deleted afterwards."""
    prefix = f"swe2e:{secrets.token_hex(6)}:"
    yield prefix
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


def budget_settings(
    tmp: Path, ups: tuple[ScriptedAnthropic, ScriptedOpenAI], **kw: Any
) -> Settings:
    ant, oai = ups
    skills = {SKILL: {"budgets": [{"window": "day", "tokens": BUDGET}]}}
    return stack_settings(tmp, ant.url, oai.url, skills=skills, **kw)


async def counters_usage(app: Any, settings: Settings) -> int:
    """The counter through the Counters API: the gateway's own instance for memory (idle
    server, and memory counters never await, so reading from this loop is safe), a second
    client on the same keys for Redis."""
    if settings.state_url == "memory":
        own: Counters = app.state.runtime.counters
        return (await own.usage(LIMIT)).used
    other = open_counters(settings.state_url, settings.state.key_prefix)
    try:
        return (await other.usage(LIMIT)).used
    finally:
        await other.aclose()


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_50_concurrent_requests_against_10k(
    backend: str,
    tmp_path: Path,
    start_gateway: Any,
    upstreams: tuple[ScriptedAnthropic, ScriptedOpenAI],
    redis_prefix: str,
) -> None:
    state: Any = "memory" if backend == "memory" else {"url": REDIS_URL, "key_prefix": redis_prefix}
    settings = budget_settings(tmp_path, upstreams, state=state)
    app = create_app(settings, say=lambda _t: None)
    url = start_gateway(settings, app=app)
    ant = upstreams[0]
    # Slow answers keep every admitted request in flight while the others reserve, so no
    # settle frees room early: "at most 10" is then exactly what the reservation allows.
    for _ in range(50):
        ant.enqueue(
            json_reply(anthropic_message("ok", input_tokens=30, output_tokens=900)).slow(0.5)
        )

    async def one(sdk: anthropic.AsyncAnthropic) -> str | anthropic.RateLimitError:
        try:
            await sdk.messages.create(model="m", max_tokens=1000, messages=MSG)
        except anthropic.RateLimitError as exc:
            return exc
        return "ok"

    sdk = anthropic.AsyncAnthropic(
        base_url=url, api_key=AGENT_KEY, default_headers={"X-Skill": SKILL}, max_retries=0
    )
    async with sdk:
        results = await asyncio.wait_for(asyncio.gather(*(one(sdk) for _ in range(50))), 30)
    admitted = [r for r in results if r == "ok"]
    refused = [r for r in results if isinstance(r, anthropic.RateLimitError)]
    assert 1 <= len(admitted) <= 10 and len(admitted) + len(refused) == 50
    for exc in refused:
        assert exc.status_code == 429 and int(exc.response.headers["retry-after"]) >= 1
        assert exc.response.headers["x-ratelimit-limit-tokens"] == str(BUDGET)
        assert "token budget exceeded for skill 'code-review' (day window" in exc.message
    records = await audit_records(settings, 50)
    assert len(records) == 50
    assert sum(r.status == 429 for r in records) == len(refused)
    charged = sum((r.input_tokens or 0) + (r.output_tokens or 0) for r in records)
    assert charged == len(admitted) * 930 <= BUDGET
    assert await counters_usage(app, settings) == charged
    print(f"[{backend}] admitted {len(admitted)}, refused {len(refused)}, settled {charged}")


async def test_openai_request_without_max_tokens_gets_the_default_cap(
    tmp_path: Path,
    start_gateway: Any,
    upstreams: tuple[ScriptedAnthropic, ScriptedOpenAI],
) -> None:
    ant, oai = upstreams
    skills = {
        "*": {"default_max_tokens": 3000},
        SKILL: {"budgets": [{"window": "day", "tokens": BUDGET}]},
    }
    settings = stack_settings(tmp_path, ant.url, oai.url, skills=skills)
    url = start_gateway(settings)
    oai.enqueue(json_reply(openai_completion("hi", prompt_tokens=10, completion_tokens=5)))
    async with openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key=AGENT_KEY, default_headers={"X-Skill": SKILL}, max_retries=0
    ) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(model="gpt-x", messages=MSG)
    # The provider (type openai) is told the cap the budget reserved; nothing else changed.
    sent = oai.last.json()
    assert sent["max_completion_tokens"] == 3000 and "max_tokens" not in sent
    assert sent["messages"] == MSG and sent["model"] == "gpt-x"
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < BUDGET - 3000
    (record,) = await audit_records(settings, 1)
    assert (record.input_tokens, record.output_tokens) == (10, 5)


async def test_stream_broken_after_first_byte_is_charged_not_retried(
    tmp_path: Path,
    start_gateway: Any,
    upstreams: tuple[ScriptedAnthropic, ScriptedOpenAI],
) -> None:
    settings = budget_settings(tmp_path, upstreams)
    app = create_app(settings, say=lambda _t: None)
    url = start_gateway(settings, app=app)
    ant = upstreams[0]
    # message_start (input 42) and ping go out, then the connection drops mid-stream.
    ant.enqueue(sse_reply(anthropic_text_stream("Hello there", input_tokens=42)).dropped(3))
    body = orjson.dumps({"model": "m", "max_tokens": 1000, "stream": True, "messages": MSG})
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.post(url + "/v1/messages", headers=HEADERS, content=body)
    assert resp.status_code == 200 and b"message_start" in resp.content
    assert b"stream broke" in resp.content  # a protocol-correct error event ends it
    assert len(ant.requests) == 1  # committed after the first byte: never retried
    (record,) = await audit_records(settings, 1)
    assert record.status == 502 and len(record.upstream_attempts) == 1
    assert record.input_tokens is not None and record.input_tokens >= 42
    charged = record.input_tokens + (record.output_tokens or 0)
    assert await counters_usage(app, settings) == charged


# -- Redis stopped mid-test -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server subprocess of our own (the shared one is never stopped)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.RedisError), redis.Redis(port=self.port) as client:
                if client.ping():
                    return
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _refused_metric() -> float:
    labels = {"skill": SKILL, "outcome": "refused"}
    return REGISTRY.get_sample_value("skillwarden_budget_store_unavailable_total", labels) or 0.0


async def test_redis_stopped_fails_closed_then_resumes(
    tmp_path: Path,
    start_gateway: Any,
    upstreams: tuple[ScriptedAnthropic, ScriptedOpenAI],
    private_redis: PrivateRedis,
) -> None:
    state = {"url": private_redis.url, "timeout_s": 0.5}
    settings = budget_settings(tmp_path, upstreams, state=state)
    url = start_gateway(settings)

    def sdk(skill: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            base_url=url, api_key=AGENT_KEY, default_headers={"X-Skill": skill}, max_retries=0
        )

    async with sdk(SKILL) as budgeted, sdk("pdf-processing") as free:
        await budgeted.messages.create(model="m", max_tokens=100, messages=MSG)
        private_redis.stop()
        before = _refused_metric()
        started = time.monotonic()
        with pytest.raises(anthropic.InternalServerError) as raised:
            await budgeted.messages.create(model="m", max_tokens=100, messages=MSG)
        assert time.monotonic() - started < 5  # bounded by state.timeout_s, not hanging
        exc = raised.value
        assert exc.status_code == 503 and exc.response.headers["retry-after"] == "5"
        assert "budget store unavailable" in exc.message and "'code-review'" in exc.message
        assert _refused_metric() == before + 1
        # A skill without budgets does not need the store.
        reply = await free.messages.create(model="m", max_tokens=100, messages=MSG)
        assert reply.content
        private_redis.start()  # same port, empty: the gateway reconnects on its own
        deadline = time.monotonic() + 10
        while True:
            try:
                await budgeted.messages.create(model="m", max_tokens=100, messages=MSG)
                break
            except anthropic.InternalServerError:
                assert time.monotonic() < deadline, "service did not resume after Redis restart"
                await asyncio.sleep(0.2)
    records = await audit_records(settings, 4)
    down = [r for r in records if r.status == 503]
    assert down and all(r.provider is None and not r.upstream_attempts for r in down)
    assert any("budget_unavailable" in reason for r in down for reason in r.reasons)


async def test_budget_unavailable_in_openai_shape(
    tmp_path: Path,
    start_gateway: Any,
    upstreams: tuple[ScriptedAnthropic, ScriptedOpenAI],
) -> None:
    with socket.socket() as s:  # a port nothing listens on: the store is down from the start
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    settings = budget_settings(tmp_path, upstreams, state={"url": dead, "timeout_s": 0.3})
    url = start_gateway(settings)
    async with httpx.AsyncClient(timeout=10) as client:
        body = orjson.dumps({"model": "gpt-x", "max_tokens": 10, "messages": MSG})
        resp = await client.post(url + "/v1/chat/completions", headers=HEADERS, content=body)
    assert resp.status_code == 503 and resp.headers["retry-after"] == "5"
    error = resp.json()["error"]
    assert error["code"] == "budget_unavailable" and error["type"] == "server_error"
    assert upstreams[1].requests == []
