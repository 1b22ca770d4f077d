"""UpstreamClient against scripted upstreams: forwarding, phased timeouts, pooling, secrets."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import pytest

from gateway.upstream.client import (
    ProviderTarget,
    Timeouts,
    UpstreamClient,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReply,
    UpstreamTimeout,
    parse_json_body,
)
from tests.e2e.upstreams import (
    Reply,
    ScriptedAnthropic,
    ScriptedOpenAI,
    anthropic_error,
    anthropic_message,
    anthropic_text_stream,
    drop_connection,
    html_reply,
    json_reply,
    malformed_json_reply,
    raw_reply,
    refusing_port,
    sse_reply,
)

KEY = "sk-ant-PROVIDER-SECRET-0123456789"
BETA = "claude-code-20250219,context-1m-2025-08-07,interleaved-thinking-2025-05-14"
CLIENT_HEADERS = {
    "x-api-key": "sk-sw-client-key",
    "authorization": "Bearer sk-sw-client-key",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": BETA,
    "content-type": "application/json",
    "accept": "application/json",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
    "x-stainless-retry-count": "0",
    "x-claude-code-session-id": "11f2b8fc",
    "x-skill": "code-review",
    "cookie": "session=abc",
    "host": "gateway.local",
    "connection": "keep-alive",
    "content-length": "12",
    "accept-encoding": "gzip, deflate, br, zstd",
    "x-forwarded-for": "10.0.0.1",
}
BODY = b'{"model":"claude-opus-4-8","stream":true,"x":"\xc3\xa9"}'
FAST = Timeouts(connect=2.0, first_byte=2.0, idle=2.0, total=10.0)


def target(
    url: str, kind: str = "anthropic", timeouts: Timeouts = FAST, **kw: object
) -> ProviderTarget:
    return ProviderTarget("main", url, kind, KEY, timeouts, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def up() -> AsyncIterator[ScriptedAnthropic]:
    async with ScriptedAnthropic() as server:
        yield server


@pytest.fixture
async def oai() -> AsyncIterator[ScriptedOpenAI]:
    async with ScriptedOpenAI() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    async with UpstreamClient() as c:
        yield c


def assert_no_secret(*objects: object) -> None:
    for obj in objects:
        assert KEY not in repr(obj) and KEY not in str(obj)
        if isinstance(obj, BaseException):
            assert all(KEY not in repr(arg) for arg in obj.args)
            assert obj.__cause__ is None or KEY not in repr(obj.__cause__)


async def test_anthropic_forwarding_strips_client_auth_and_sets_provider_key(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    async with await client.send(
        target(up.url), "/v1/messages?beta=true", BODY, CLIENT_HEADERS
    ) as r:
        assert r.status == 200 and r.is_stream
        assert b"".join([c async for c in r.iter_chunks()]).startswith(b"event: message_start")
    got = up.last
    assert got.body == BODY and got.path == "/v1/messages" and got.query == {"beta": "true"}
    assert got.headers["x-api-key"] == KEY
    assert "authorization" not in got.headers
    assert got.headers["anthropic-beta"] == BETA
    assert got.headers["anthropic-version"] == "2023-06-01"
    assert got.headers["user-agent"] == CLIENT_HEADERS["user-agent"]
    assert got.headers["x-stainless-retry-count"] == "0"
    assert got.headers["x-claude-code-session-id"] == "11f2b8fc"
    for name in ("x-skill", "cookie", "x-forwarded-for"):
        assert name not in got.headers
    assert got.headers["host"] == f"127.0.0.1:{up.port}"
    assert got.headers["content-length"] == str(len(BODY))
    assert sum(1 for k, _ in got.raw_headers if k.lower() == "x-api-key") == 1


async def test_openai_forwarding_uses_bearer_and_drops_foreign_headers(
    oai: ScriptedOpenAI, client: UpstreamClient
) -> None:
    headers = {
        "Authorization": "Bearer sk-sw-client",
        "OpenAI-Organization": "org-client",
        "openai-beta": "assistants=v2",
        "anthropic-beta": BETA,
        "X-Stainless-Lang": "python",
    }
    t = target(oai.url, "openai", extra_headers=(("OpenAI-Project", "proj_gw"),))
    r = await client.send(t, "/v1/chat/completions", b"{}", headers)
    body = parse_json_body(r, await r.read_body(1 << 20))
    assert body["object"] == "chat.completion"
    got = oai.last.headers
    assert got["authorization"] == f"Bearer {KEY}"
    assert got["openai-project"] == "proj_gw"
    assert got["openai-beta"] == "assistants=v2" and got["x-stainless-lang"] == "python"
    assert "openai-organization" not in got and "anthropic-beta" not in got
    assert "anthropic-version" not in got and "x-api-key" not in got


async def test_defaults_and_connection_nominated_headers(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    headers = {"connection": "close, anthropic-beta", "anthropic-beta": BETA}
    r = await client.send(target(up.url), "/v1/messages", b"{}", headers)
    await r.read_body(1 << 20)
    got = up.last.headers
    assert "anthropic-beta" not in got  # nominated hop-by-hop by the client
    assert got["anthropic-version"] == "2023-06-01"  # default when the client sent none
    assert got["content-type"] == "application/json"


async def test_client_cannot_override_provider_key(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    r = await client.send(target(up.url), "/v1/messages", b"{}", {"X-Api-Key": "sk-evil"})
    await r.read_body(1 << 20)
    assert up.last.headers["x-api-key"] == KEY


async def test_reply_headers_filtered_and_error_status_kept(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    reply = anthropic_error(429, "slow down", retry_after=5)
    up.enqueue(
        Reply(429, {**reply.headers, "set-cookie": "__cf_bm=x", "x-extra": "1"}, reply.pieces)
    )
    r = await client.send(target(up.url), "/v1/messages", b"{}", {})
    body = parse_json_body(r, await r.read_body(1 << 20))
    assert r.status == 429 and body["error"]["type"] == "rate_limit_error"
    assert r.headers["retry-after"] == "5" and r.headers["x-extra"] == "1"
    assert "request-id" in r.headers
    for name in ("set-cookie", "content-length", "date", "server", "transfer-encoding"):
        assert name not in r.headers


async def test_gzip_is_decoded_and_content_encoding_dropped(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    payload = b'{"type":"message","content":[]}' * 50
    up.enqueue(
        raw_reply(gzip.compress(payload), "application/json", headers={"content-encoding": "gzip"})
    )
    r = await client.send(target(up.url), "/v1/messages", b"{}", {})
    assert await r.read_body(1 << 20) == payload
    assert "content-encoding" not in r.headers and "content-length" not in r.headers


async def test_redirects_are_not_followed(up: ScriptedAnthropic, client: UpstreamClient) -> None:
    async with ScriptedAnthropic() as elsewhere:
        up.enqueue(Reply(307, {"location": f"{elsewhere.url}/v1/messages"}))
        r = await client.send(target(up.url), "/v1/messages", b"{}", {})
        await r.read_body(1024)
        assert r.status == 307 and elsewhere.requests == []


async def test_connect_refused(client: UpstreamClient) -> None:
    with refusing_port() as port, pytest.raises(UpstreamConnectError) as info:
        await client.send(target(f"http://127.0.0.1:{port}"), "/v1/messages", b"{}", {})
    assert info.value.provider == "main" and info.value.elapsed_ms >= 0
    assert_no_secret(info.value)


async def test_slow_first_byte_is_a_first_byte_timeout(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    up.enqueue(json_reply(anthropic_message("late")).slow(2.0))
    t = target(up.url, timeouts=Timeouts(connect=1.0, first_byte=0.2, idle=5.0, total=5.0))
    with pytest.raises(UpstreamTimeout) as info:
        await client.send(t, "/v1/messages", b"{}", {})
    assert info.value.phase == "first_byte" and 150 < info.value.elapsed_ms < 1500
    assert_no_secret(info.value)


async def test_idle_stream_is_an_idle_timeout(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    up.enqueue(sse_reply(anthropic_text_stream("hello there")).stalled(after=3, seconds=3.0))
    t = target(up.url, timeouts=Timeouts(connect=1.0, first_byte=5.0, idle=0.2, total=10.0))
    r = await client.send(t, "/v1/messages", b"{}", {})
    received = b""
    with pytest.raises(UpstreamTimeout) as info:
        async for chunk in r.iter_chunks():
            received += chunk
    assert info.value.phase == "idle" and received.count(b"\n\n") == 3
    assert_no_secret(info.value, r)


async def test_total_timeout_on_a_paced_stream(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    up.enqueue(sse_reply(anthropic_text_stream("a b c d e f", split_into=6)).paced(0.1))
    t = target(up.url, timeouts=Timeouts(connect=1.0, first_byte=1.0, idle=1.0, total=0.35))
    r = await client.send(t, "/v1/messages", b"{}", {})
    with pytest.raises(UpstreamTimeout) as info:
        async for _ in r:
            pass
    assert info.value.phase == "total"


async def test_broken_stream_raises_from_iter_chunks(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    up.enqueue(sse_reply(anthropic_text_stream("cut short")).dropped(after=2))
    r = await client.send(target(up.url), "/v1/messages", b"{}", {})
    received = []
    with pytest.raises(UpstreamProtocolError) as info:
        async for chunk in r.iter_chunks():
            received.append(chunk)
    assert info.value.head_received and b"message_start" in b"".join(received)
    assert_no_secret(info.value)


async def test_dropped_before_head(up: ScriptedAnthropic, client: UpstreamClient) -> None:
    up.enqueue(drop_connection())
    with pytest.raises(UpstreamProtocolError) as info:
        await client.send(target(up.url), "/v1/messages", b"{}", {})
    assert not info.value.head_received


async def test_truncated_json_body(up: ScriptedAnthropic, client: UpstreamClient) -> None:
    up.enqueue(Reply(200, {"content-type": "application/json"}, (b'{"a":', b'"b"}'), drop_after=1))
    r = await client.send(target(up.url), "/v1/messages", b"{}", {})
    with pytest.raises(UpstreamProtocolError):
        await r.read_body(1 << 20)


async def test_html_malformed_and_oversize_bodies(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    up.enqueue(html_reply(502), malformed_json_reply(), json_reply({"big": "x" * 5000}))
    t = target(up.url)
    r = await client.send(t, "/v1/messages", b"{}", {})
    with pytest.raises(UpstreamProtocolError, match="HTML"):
        parse_json_body(r, await r.read_body(1 << 20))
    r = await client.send(t, "/v1/messages", b"{}", {})
    with pytest.raises(UpstreamProtocolError, match="malformed JSON"):
        parse_json_body(r, await r.read_body(1 << 20))
    r = await client.send(t, "/v1/messages", b"{}", {})
    with pytest.raises(UpstreamProtocolError, match="exceeds 1000") as info:
        await r.read_body(1000)
    assert info.value.provider == "main"


async def test_connections_are_pooled(up: ScriptedAnthropic, client: UpstreamClient) -> None:
    t = target(up.url)
    for _ in range(5):
        r = await client.send(t, "/v1/messages", b"{}", {})
        await r.read_body(1 << 20)
    stream = await client.send(t, "/v1/messages", b'{"stream":true}', {})
    async for _ in stream:
        pass
    assert len(up.requests) == 6 and up.connections_opened == 1
    replies = await asyncio.gather(*(client.send(t, "/v1/messages", b"{}", {}) for _ in range(3)))
    await asyncio.gather(*(r.read_body(1 << 20) for r in replies))
    assert up.connections_opened == 3  # one reused, two new


async def test_half_read_stream_is_closed_not_reused(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    t = target(up.url)
    up.enqueue(sse_reply(anthropic_text_stream("slow words")).paced(0.05))
    r = await client.send(t, "/v1/messages", b"{}", {})
    await r.__anext__()
    r.release()
    r.release()  # idempotent
    r2 = await client.send(t, "/v1/messages", b"{}", {})
    await r2.read_body(1 << 20)
    assert up.connections_opened == 2


async def test_close_releases_everything(up: ScriptedAnthropic) -> None:
    c = UpstreamClient([target(up.url)])
    await c.start()
    r = await c.send(target(up.url), "/v1/messages", b"{}", {})
    await r.read_body(1 << 20)
    assert up.open_connections == 1
    await c.close()
    for _ in range(50):
        if up.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert up.open_connections == 0
    with pytest.raises(RuntimeError):
        await c.send(target(up.url), "/v1/messages", b"{}", {})


def test_key_never_in_repr_or_validation_errors() -> None:
    t = target("http://127.0.0.1:1")
    assert_no_secret(t)
    with pytest.raises(ValueError) as info:
        ProviderTarget("p", "http://x", "anthropic", KEY + "\r\nx-evil: 1")
    assert_no_secret(info.value)
    with pytest.raises(ValueError):
        ProviderTarget("p", "http://user:pw@x", "anthropic", KEY)
    with pytest.raises(ValueError):
        ProviderTarget("p", "ftp://x", "anthropic", KEY)


async def test_reply_repr_and_timings(up: ScriptedAnthropic, client: UpstreamClient) -> None:
    r: UpstreamReply = await client.send(target(up.url), "/v1/messages", b"{}", {})
    await r.read_body(1 << 20)
    assert_no_secret(r)
    assert r.head_ms >= 0 and r.elapsed_ms >= r.head_ms and r.provider == "main"
    assert isinstance(r.protocol_error("x"), UpstreamError)


async def test_garbage_instead_of_http_is_a_protocol_error(client: UpstreamClient) -> None:
    async def speak_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(speak_garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(UpstreamProtocolError) as info:
            await client.send(target(f"http://127.0.0.1:{port}"), "/v1/messages", b"{}", {})
        assert not info.value.head_received and info.value.code == "protocol"
    finally:
        server.close()
        await server.wait_closed()


async def test_base_url_prefix_and_error_codes(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    up.enqueue(json_reply({"ok": True}), path="/proxy/anthropic/v1/messages")
    r = await client.send(target(f"{up.url}/proxy/anthropic/"), "/v1/messages", b"{}", {})
    assert parse_json_body(r, await r.read_body(1024)) == {"ok": True}
    assert up.last.path == "/proxy/anthropic/v1/messages"
    assert UpstreamTimeout("p", 1.0, "idle").code == "timeout:idle"
    assert UpstreamConnectError("p", 1.0, "x").code == "connect"


async def test_stream_bytes_arrive_unchanged_and_incrementally(
    up: ScriptedAnthropic, client: UpstreamClient
) -> None:
    reply = sse_reply(anthropic_text_stream("é" * 40, split_into=8)).rechunked(5).paced(0.002)
    up.enqueue(reply)
    r = await client.send(target(up.url), "/v1/messages", b"{}", {})
    chunks = [c async for c in r.iter_chunks()]
    assert b"".join(chunks) == reply.body and len(chunks) > 10
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
