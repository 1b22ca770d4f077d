"""Bad bytes in request heads, over a raw socket to the real stack (GatewayHttpProtocol).

A head llhttp refuses on a proxy route: 400 in that client's format, nothing forwarded,
exactly one audit record, the connection closed and nothing after the bad head parsed.
Smuggling shapes (CRLF splits, duplicated Content-Length, Transfer-Encoding + Content-Length)
are still refused by the parser; they are now answered in JSON and audited too."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.e2e.conftest import embedded_settings
from tests.e2e.proxy_support import (
    AGENT_KEY,
    MSG,
    Stack,
    audit_records,
    make_stack,
    stack,
    upstreams,
)
from tests.e2e.test_serve import CLEAN_ENV, SKILLWARDEN, free_port

pytestmark = pytest.mark.e2e
__all__ = ["make_stack", "stack", "upstreams"]

GOOD = orjson.dumps({"model": "m", "max_tokens": 5, "messages": MSG})
PATHS = ["/v1/messages", "/v1/chat/completions"]

# Header lines (the bytes between the good headers and the blank line) llhttp refuses.
BAD_LINES: dict[str, bytes] = {
    "NUL": b"X-Skill: code\x00review",
    "SOH": b"X-Skill: code\x01review",
    "ESC": b"X-Skill: code\x1breview",
    "DEL": b"X-Skill: code\x7freview",
    "bare CR": b"X-Skill: code\rreview",
    "bare LF": b"X-Skill: code\nreview",
    "obs-fold": b"X-Skill: code\r\n review",
    "space in name": b"X Skill: code-review",
    "space before colon": b"Transfer-Encoding : chunked",
    "CTL then LF split": b"X-A: a\x01\nTransfer-Encoding: chunked",
    "empty value CR split": b"X-A: \rContent-Length: 0",
    "duplicated Content-Length": b"Content-Length: 0",  # after the request's own
    "TE + CL": b"Transfer-Encoding: chunked",
    "Content-Length 5x": b"Content-Length: 5x",
}


def head(path: str, line: bytes = b"", *, method: bytes = b"POST", length: int = 0) -> bytes:
    lines = [
        method + b" " + path.encode() + b" HTTP/1.1",
        b"Host: gateway",
        b"X-Api-Key: " + AGENT_KEY.encode(),
        b"Content-Type: application/json",
        b"Content-Length: " + str(length).encode(),
    ]
    return b"\r\n".join([*lines, line] if line else lines) + b"\r\n\r\n"


async def exchange(url: str, data: bytes, timeout: float = 10.0) -> list[tuple[int, bytes]]:
    """Send raw bytes; read every response until the server closes: [(status, body)]."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout)  # to EOF: the server must close
    writer.close()
    replies: list[tuple[int, bytes]] = []
    while raw:
        top, _, rest = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = top.split(b"\r\n")
        fields = dict(h.lower().split(b": ", 1) for h in header_lines)
        assert fields[b"content-type"] == b"application/json", top
        size = int(fields[b"content-length"])
        replies.append((int(status_line.split()[1]), rest[:size]))
        raw = rest[size:]
    return replies


def assert_client_format(path: str, body: bytes) -> str:
    error: dict[str, Any] = orjson.loads(body)["error"]
    assert error["type"] == "invalid_request_error"
    if path == "/v1/chat/completions":
        assert error["code"] == "invalid_request"
    else:
        assert orjson.loads(body)["type"] == "error"
    return str(error["message"])


async def assert_one_record(stack: Stack, endpoint: str, status: int = 400) -> None:
    records = await stack.records(2, timeout=0.3)  # waits a little for a second one
    assert [(r.endpoint, r.status, r.decision) for r in records] == [(endpoint, status, "deny")]
    assert stack.ant.requests == [] and stack.oai.requests == []


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", list(BAD_LINES))
async def test_bad_head_is_refused_in_client_format(stack: Stack, case: str, path: str) -> None:
    ((status, body),) = await exchange(stack.url, head(path, BAD_LINES[case]))
    assert status == 400
    assert assert_client_format(path, body).startswith("malformed request head: ")
    await assert_one_record(stack, path)


async def test_nothing_after_a_bad_head_is_parsed(stack: Stack) -> None:
    # A complete, valid request hidden behind the bad head is dropped with the connection.
    smuggled = head("/v1/messages", length=len(GOOD)) + GOOD
    data = head("/v1/messages", b"X-A: a\x01\nContent-Length: " + str(len(smuggled)).encode())
    replies = await exchange(stack.url, data + smuggled)
    assert [status for status, _ in replies] == [400]
    await assert_one_record(stack, "/v1/messages")


async def test_bad_head_pipelined_behind_a_request(stack: Stack) -> None:
    # The first request is still being answered when the second's head fails: it is queued.
    first = head("/v1/messages", length=2) + b"[}"
    replies = await exchange(stack.url, first + head("/v1/messages", BAD_LINES["SOH"]))
    assert [status for status, _ in replies] == [400, 400]
    assert "malformed request head" in assert_client_format("/v1/messages", replies[1][1])
    records = await stack.records(3, timeout=0.3)
    assert [r.status for r in records] == [400, 400]


async def test_bad_head_on_models(stack: Stack) -> None:
    data = head("/v1/models", BAD_LINES["DEL"], method=b"GET")
    ((status, body),) = await exchange(stack.url, data)
    assert status == 400
    assert_client_format("/v1/chat/completions", body)  # no anthropic-version: OpenAI's shape
    await assert_one_record(stack, "/v1/models")


@pytest.mark.parametrize(
    "data",
    [
        head("/healthz", BAD_LINES["SOH"], method=b"GET"),  # not a proxy route
        head("/v1/messages", BAD_LINES["SOH"], method=b"GET"),  # not a proxy method
        b"P@ST /v1/messages HTTP/1.1\r\n\r\n",  # no method, so no route
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS to a plain-HTTP port
    ],
    ids=["other path", "other method", "bad method", "TLS hello"],
)
async def test_other_parse_failures_get_a_json_400(stack: Stack, data: bytes) -> None:
    ((status, body),) = await exchange(stack.url, data)
    assert status == 400
    assert assert_client_format("/v1/chat/completions", body).startswith("malformed HTTP")
    assert assert_client_format("/v1/messages", body)  # one body both SDKs read
    assert await stack.records(1, timeout=0.2) == []
    assert stack.ant.requests == [] and stack.oai.requests == []


@pytest.mark.parametrize("path", PATHS)
async def test_8k_header_value(stack: Stack, path: str) -> None:
    headers = {"x-api-key": AGENT_KEY, "x-skill": "s" * 8192, "content-type": "application/json"}
    async with httpx.AsyncClient() as client:
        resp = await client.post(stack.url + path, headers=headers, content=GOOD)
    assert resp.status_code == 400
    assert "too long" in assert_client_format(path, resp.content)
    await assert_one_record(stack, path)


async def test_sdks_with_a_control_character_in_a_header(stack: Stack) -> None:
    # Both SDKs (httpx, h11) send the byte as given; each reads the gateway's refusal.
    async with stack.anthropic(skill="code\x01review") as client:
        with pytest.raises(anthropic.BadRequestError) as ant_error:
            await client.messages.create(model="m", max_tokens=5, messages=MSG)
    assert "malformed request head" in ant_error.value.message
    async with stack.openai(skill="code\x01review") as oai:
        with pytest.raises(openai.BadRequestError) as oai_error:
            await oai.chat.completions.create(model="m", messages=MSG)
    assert oai_error.value.code == "invalid_request"
    records = await stack.records(3, timeout=0.3)
    assert [(r.endpoint, r.status) for r in records] == [
        ("/v1/messages", 400),
        ("/v1/chat/completions", 400),
    ]
    assert stack.ant.requests == [] and stack.oai.requests == []


def test_serve_workers_use_the_gateway_protocol(tmp_path: Path) -> None:
    # `skillwarden serve --workers 2`: every worker answers a bad head in the client's format.
    port = free_port()
    cmd = [str(SKILLWARDEN), "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)]
    with (tmp_path / "serve.log").open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--workers", "2"], stdout=out, stderr=subprocess.STDOUT, env=CLEAN_ENV
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)

        async def bad_heads() -> list[list[tuple[int, bytes]]]:
            data = head("/v1/messages", BAD_LINES["SOH"])
            return await asyncio.gather(*(exchange(url, data) for _ in range(16)))

        for ((status, body),) in asyncio.run(bad_heads()):
            assert status == 400
            assert "malformed request head" in assert_client_format("/v1/messages", body)
        records = asyncio.run(audit_records(embedded_settings(tmp_path / "data"), 16))
        assert [(r.endpoint, r.status) for r in records] == [("/v1/messages", 400)] * 16
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
