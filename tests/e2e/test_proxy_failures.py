"""Bad input is refused in the client's format (never forwarded, never a 500, always audited);
upstream failures are re-rendered; one audit record per request, whatever happened."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.e2e.proxy_support import (
    AGENT_KEY,
    MSG,
    PROVIDER_KEY,
    MakeStack,
    Stack,
    make_stack,
    stack,
    upstreams,
)
from tests.e2e.upstreams import (
    anthropic_error,
    anthropic_text_stream,
    drop_connection,
    html_reply,
    malformed_json_reply,
    sse_reply,
)
from tests.e2e.upstreams.fixtures import refused_url

pytestmark = pytest.mark.e2e
__all__ = ["make_stack", "refused_url", "stack", "upstreams"]

HEADERS = {"x-api-key": AGENT_KEY, "x-skill": "code-review", "content-type": "application/json"}
GOOD = orjson.dumps({"model": "m", "max_tokens": 5, "messages": MSG})
DEEP = b'{"model":"m","messages":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
BAD_BODIES: list[tuple[str, bytes]] = [
    ("malformed", b'{"model": "m", "messages": [}'),
    ("invalid utf-8", b'{"model": "\xff\xfe", "max_tokens": 5, "messages": []}'),
    ("wrong types", b'{"model": 5, "messages": "hi"}'),
    ("not an object", b"[1, 2]"),
    ("deep nesting", DEEP),
    ("duplicate keys", b'{"model": "m", "max_tokens": 5, "messages": [], "model": "x"}'),
    ("duplicate spaced", b'{"tools": [] , "model" : "m", "messages": [], "tools" : [{}]}'),
    ("NaN", b'{"model": "m", "max_tokens": NaN, "messages": []}'),
    ("unknown block", b'{"model":"m","messages":[{"role":"assistant","content":[{"type":"x"}]}]}'),
    (
        "unknown call",
        b'{"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"x"}]}]}',
    ),
    ("empty", b""),
]

# Each format refuses what could hide a tool call in its own shape.
_PATHS = {"unknown block": ("/v1/messages",), "unknown call": ("/v1/chat/completions",)}


@pytest.mark.parametrize(("case", "body"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
async def test_bad_bodies(stack: Stack, case: str, body: bytes) -> None:
    async with httpx.AsyncClient() as client:
        for path in _PATHS.get(case, ("/v1/messages", "/v1/chat/completions")):
            resp = await client.post(stack.url + path, headers=HEADERS, content=body)
            assert resp.status_code == 400, (case, path, resp.text)
            error = resp.json()["error"]
            assert error["type"] == "invalid_request_error"
            if path.endswith("completions"):
                assert error["code"] == "invalid_request"
    assert stack.ant.requests == [] and stack.oai.requests == []
    count = len(_PATHS.get(case, "ab"))
    records = await stack.records(count)
    assert len(records) == count and all(r.status == 400 for r in records)


@pytest.mark.parametrize(
    "headers",
    [{"x-skill": "a" * 8192}, {"anthropic-beta": "b" * 8192}, {"x-api-key": "k" * 8192}],
    ids=["8k-skill", "8k-beta", "8k-key"],
)
async def test_oversized_header_values(stack: Stack, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            stack.url + "/v1/messages", headers={**HEADERS, **headers}, content=GOOD
        )
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert stack.ant.requests == []
    assert len(await stack.records(1)) == 1


@pytest.mark.parametrize("value", ["code-review\x01", "code-review\x7f"], ids=["SOH", "DEL"])
async def test_control_characters_in_headers(stack: Stack, value: str) -> None:
    # llhttp refuses the head; gateway/server.py hands the refusal to the proxy, which answers
    # in the client's format and audits it (raw-byte cases: test_header_input.py).
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            stack.url + "/v1/messages", headers={**HEADERS, "x-skill": value}, content=GOOD
        )
    assert resp.status_code == 400
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert stack.ant.requests == []
    (record,) = await stack.records(1)
    assert record.status == 400 and record.decision == "deny"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_oversized_body_is_413(make_stack: MakeStack, declared: bool) -> None:
    stack = make_stack(server={"max_body_bytes": 4096})
    big = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 10_000}]})

    async def chunks() -> Any:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async with httpx.AsyncClient() as client:
        resp = await client.post(
            stack.url + "/v1/messages", headers=HEADERS, content=big if declared else chunks()
        )
    assert resp.status_code == 413
    assert resp.json()["error"]["type"] == "request_too_large"
    assert stack.ant.requests == []
    (record,) = await stack.records(1)
    assert record.status == 413 and record.decision == "deny"


# Retryable failures (5xx, a dropped connection) are tried 1 + max_retries (2) times on the
# only provider, so the script repeats them; the client then sees the last upstream error
# (its status kept) or, with no HTTP answer at all, 503 no_provider_available. A 429 whose
# Retry-After is over the wait cap (2 s) is not waited for: one attempt, status kept.
@pytest.mark.parametrize(
    ("reply", "error", "status", "attempts"),
    [
        (
            anthropic_error(429, "rate limited upstream", retry_after=3),
            anthropic.RateLimitError,
            429,
            1,
        ),
        (anthropic_error(500, "upstream failed"), anthropic.InternalServerError, 500, 3),
        (html_reply(502), anthropic.InternalServerError, 502, 3),
        (html_reply(200), anthropic.InternalServerError, 502, 1),
        (malformed_json_reply(), anthropic.InternalServerError, 502, 1),
        (drop_connection(), anthropic.InternalServerError, 503, 3),
    ],
    ids=["429", "500", "html-502", "html-200", "malformed-json", "dropped"],
)
async def test_upstream_failures(
    stack: Stack, reply: Any, error: type[Exception], status: int, attempts: int
) -> None:
    for _ in range(attempts):
        stack.ant.enqueue(reply)
    async with stack.anthropic() as sdk:
        with pytest.raises(error) as raised:
            await sdk.messages.create(model="m", max_tokens=5, messages=MSG)
    assert getattr(raised.value, "status_code", None) == status
    assert "<html" not in str(raised.value) and PROVIDER_KEY not in str(raised.value)
    assert len(stack.ant.requests) == attempts
    (record,) = await stack.records(1)
    assert record.status == status and len(record.upstream_attempts) == attempts
    if status == 503:
        assert "no provider available" in str(raised.value) and "dropped" in str(raised.value)


async def test_broken_stream_ends_with_an_error_event(stack: Stack) -> None:
    stack.ant.enqueue(sse_reply(anthropic_text_stream("Hello there, world")).dropped(4))
    async with stack.anthropic() as sdk:
        with pytest.raises(anthropic.APIStatusError, match="stream broke"):
            async with sdk.messages.stream(model="m", max_tokens=5, messages=MSG) as s:
                async for _ in s:
                    pass
    (record,) = await stack.records(1)
    assert record.status == 502 and any("stream broke" in r for r in record.reasons)


async def test_unreachable_provider_is_503(make_stack: MakeStack, refused_url: str) -> None:
    stack = make_stack(
        providers={"anthropic": {"type": "anthropic", "base_url": refused_url, "api_key": "k"}}
    )
    async with stack.anthropic() as sdk:
        with pytest.raises(anthropic.APIStatusError, match="unreachable") as raised:
            await sdk.messages.create(model="m", max_tokens=5, messages=MSG)
    assert raised.value.status_code == 503
    (record,) = await stack.records(1)
    # Connect errors are retried (max_retries 2), then no_provider_available.
    assert [a["error"] for a in record.upstream_attempts] == ["connect"] * 3


async def test_client_disconnect_mid_stream_still_audits_once(stack: Stack) -> None:
    stack.ant.enqueue(sse_reply(anthropic_text_stream("slow " * 50, split_into=50)).paced(0.05))
    body = orjson.dumps({"model": "m", "max_tokens": 5, "stream": True, "messages": MSG})
    async with (
        httpx.AsyncClient() as client,
        client.stream("POST", stack.url + "/v1/messages", headers=HEADERS, content=body) as resp,
    ):
        async for _ in resp.aiter_bytes():
            break  # go away after the first bytes
    records = await stack.records(1)
    assert len(records) == 1
    assert any("disconnect" in r or "cancelled" in r for r in records[0].reasons)
    assert len(await stack.records(2, timeout=0.5)) == 1  # and never a second one
