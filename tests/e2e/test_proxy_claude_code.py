"""Claude Code's captured requests replayed through the gateway with their own headers, and
the captured tool_use stream checked allowed (code-review) and denied (data-analysis)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import orjson
import pytest

from gateway.upstream.sse import SSEDecoder
from tests.e2e.proxy_support import (
    AGENT_KEY,
    CASES,
    PROVIDER_KEY,
    MakeStack,
    make_stack,
    stack,
    upstreams,
)
from tests.e2e.upstreams import sse_raw_reply

pytestmark = pytest.mark.e2e
__all__ = ["make_stack", "stack", "upstreams"]

ALWAYS = {"skills": {"*": {"always_allowed": ["Skill", "TodoWrite"]}}}
CAPTURED_STREAM = (CASES / "mock_responses" / "stream_tool_use.sse").read_bytes()
# Set by the HTTP client or the connection, or credentials: not expected upstream as sent.
_NOT_FORWARDED = {"host", "content-length", "connection", "accept-encoding", "x-api-key", "x-skill"}


def _capture(name: str) -> dict[str, Any]:
    found = sorted((CASES / "requests").glob(f"{name}_*.json"))
    return dict(json.loads(found[0].read_text()))


def _replay_headers(capture: dict[str, Any], skill: str) -> list[tuple[str, str]]:
    out = []
    for key, value in capture["headers"]:
        low = key.lower()
        if low == "x-api-key":
            value = AGENT_KEY
        elif low == "x-skill":
            value = skill
        elif low in ("host", "content-length", "connection", "accept-encoding"):
            continue
        out.append((key, value))
    return out


async def _replay(url: str, capture: dict[str, Any], skill: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            url + capture["target"],
            headers=_replay_headers(capture, skill),
            content=orjson.dumps(capture["body"]),
        )


def _events(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(e.data) for e in SSEDecoder().feed(raw) + SSEDecoder().close()]


@pytest.mark.parametrize("name", ["02", "03"])
async def test_turns_reach_the_provider_unchanged_but_for_tools(
    make_stack: MakeStack, name: str
) -> None:
    stack = make_stack(**ALWAYS)
    capture = _capture(name)
    stack.ant.enqueue(sse_raw_reply(CAPTURED_STREAM))
    resp = await _replay(stack.url, capture, "code-review")
    assert resp.status_code == 200, resp.text
    sent = stack.ant.last
    assert sent.query == {"beta": "true"}
    for key, value in capture["headers"]:
        if key.lower() not in _NOT_FORWARDED:
            assert sent.headers[key.lower()] == value, key
    assert sent.headers["x-api-key"] == PROVIDER_KEY and "x-skill" not in sent.headers
    body, original = sent.json(), capture["body"]
    assert [t["name"] for t in body["tools"]] == ["Bash", "Read", "Skill"]
    assert list(body) == list(original)  # key order kept
    assert {k: v for k, v in body.items() if k != "tools"} == {
        k: v for k, v in original.items() if k != "tools"
    }
    kept = [t for t in original["tools"] if t["name"] in ("Bash", "Read", "Skill")]
    assert body["tools"] == kept
    (record,) = await stack.records(1)
    assert record.session_id == "11f2b8fc-3185-419a-a07d-971f8ad395fe"
    assert len(record.tools_offered) == 24 and len(record.tools_removed) == 21


async def test_captured_tool_use_stream_allowed(make_stack: MakeStack) -> None:
    stack = make_stack(**ALWAYS)
    stack.ant.enqueue(sse_raw_reply(CAPTURED_STREAM))
    resp = await _replay(stack.url, _capture("02"), "code-review")
    assert _events(resp.content) == _events(CAPTURED_STREAM)  # released exactly as it came
    (record,) = await stack.records(1)
    assert record.tool_calls[0]["decision"] == "allow"
    assert record.tool_calls[0]["rule"] == "Bash(git status)"


async def test_captured_tool_use_stream_denied(make_stack: MakeStack) -> None:
    stack = make_stack(**ALWAYS)
    stack.ant.enqueue(sse_raw_reply(CAPTURED_STREAM))
    resp = await _replay(stack.url, _capture("02"), "data-analysis")
    events = _events(resp.content)
    assert not any(e.get("content_block", {}).get("type") == "tool_use" for e in events)
    texts = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert any("Bash" in t and "denied by the gateway policy" in t for t in texts)
    (stop,) = [e for e in events if e["type"] == "message_delta"]
    assert stop["delta"]["stop_reason"] == "end_turn"
    assert events[-1]["type"] == "message_stop"
    (record,) = await stack.records(1)
    assert record.skill == "data-analysis" and record.tool_calls[0]["decision"] == "deny"
