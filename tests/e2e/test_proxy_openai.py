"""POST /v1/chat/completions through the gateway, driven by the official openai SDK."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.e2e.proxy_support import (
    MSG,
    OPENAI_PROVIDER_KEY,
    MakeStack,
    Stack,
    make_stack,
    stack,
    upstreams,
)
from tests.e2e.upstreams import (
    json_reply,
    openai_completion,
    openai_error,
    openai_tool_calls_stream,
    sse_reply,
)

pytestmark = pytest.mark.e2e
__all__ = ["make_stack", "stack", "upstreams"]

GIT_LOG = ("Bash", {"command": "git log --oneline -5"})
RM = ("Bash", {"command": "rm -rf /"})
TOOLS: Any = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("Bash", "Read", "Write")
]


async def test_non_stream_allowed_and_redacted(stack: Stack) -> None:
    stack.oai.enqueue(
        json_reply(openai_completion(None, [GIT_LOG])),
        json_reply(openai_completion(None, [RM])),
    )
    async with stack.openai() as sdk:
        ok = await sdk.chat.completions.create(model="gpt-4o", messages=MSG, tools=TOOLS)
        denied = await sdk.chat.completions.create(model="gpt-4o", messages=MSG, tools=TOOLS)
    calls = ok.choices[0].message.tool_calls or []
    assert [c.function.name for c in calls] == ["Bash"]  # type: ignore[union-attr]
    assert denied.choices[0].message.tool_calls is None
    assert denied.choices[0].finish_reason == "stop"
    assert "denied by the gateway policy" in (denied.choices[0].message.content or "")
    sent = stack.oai.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_PROVIDER_KEY}"
    assert [t["function"]["name"] for t in sent.json()["tools"]] == ["Bash", "Read"]
    first, second = await stack.records(2)
    assert (first.decision, second.decision) == ("partial", "partial")  # Write was removed
    assert second.tool_calls[0]["decision"] == "deny" and first.tools_removed == ("Write",)


async def test_stream_allowed_denied_and_usage_chunk_stripped(stack: Stack) -> None:
    stack.oai.enqueue(
        sse_reply(openai_tool_calls_stream([GIT_LOG, RM], interleave=True, include_usage=True)),
    )
    async with stack.openai() as sdk:
        stream = await sdk.chat.completions.create(
            model="gpt-4o", messages=MSG, tools=TOOLS, stream=True
        )
        chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)  # the usage chunk the gateway asked for is gone
    names = [
        tc.function.name
        for c in chunks
        for tc in (c.choices[0].delta.tool_calls or [])
        if tc.function and tc.function.name
    ]
    assert names == ["Bash"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert "rm -rf" in text and "denied" in text
    assert stack.oai.last.json()["stream_options"] == {"include_usage": True}
    (record,) = await stack.records(1)
    assert [c["decision"] for c in record.tool_calls] == ["allow", "deny"]
    assert record.input_tokens == 42 and record.output_tokens == 17


async def test_error_mode_and_refusals(make_stack: MakeStack) -> None:
    stack = make_stack(skills={"*": {"response_mode": "error"}})
    stack.oai.enqueue(json_reply(openai_completion(None, [RM])))
    async with stack.openai() as sdk:
        with pytest.raises(openai.PermissionDeniedError, match="code-review") as err:
            await sdk.chat.completions.create(model="gpt-4o", messages=MSG)
        assert err.value.code == "tool_not_allowed"
    async with stack.openai("nope") as sdk:
        with pytest.raises(openai.PermissionDeniedError, match="unknown skill") as err:
            await sdk.chat.completions.create(model="gpt-4o", messages=MSG)
        assert err.value.code == "unknown_skill"
    async with stack.openai(api_key="sk-sw-not-a-key") as sdk:
        with pytest.raises(openai.AuthenticationError) as auth:
            await sdk.chat.completions.create(model="gpt-4o", messages=MSG)
        assert auth.value.code == "unauthenticated"
    assert len(await stack.records(3)) == 3


async def test_upstream_429_keeps_status_and_retry_after(stack: Stack) -> None:
    stack.oai.enqueue(openai_error(429, "slow down", retry_after=7))
    async with stack.openai() as sdk:
        with pytest.raises(openai.RateLimitError, match="slow down") as err:
            await sdk.chat.completions.create(model="gpt-4o", messages=MSG)
    assert err.value.response.headers["retry-after"] == "7"


async def test_models_in_openai_shape(stack: Stack) -> None:
    async with stack.openai() as sdk:
        models = [m.id async for m in sdk.models.list()]
    assert "gpt-4o" in models
