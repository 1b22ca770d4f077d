"""The scripted upstreams are faithful: the official SDKs, pointed straight at them, parse every
body and stream and raise their usual exception classes on the scripted errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.upstreams import (
    ScriptedAnthropic,
    ScriptedOpenAI,
    anthropic_error,
    anthropic_error_event,
    anthropic_message,
    anthropic_stream,
    anthropic_text_stream,
    anthropic_tool_use_stream,
    html_reply,
    json_reply,
    openai_completion,
    openai_error,
    openai_text_stream,
    openai_tool_calls_stream,
    sse_raw_reply,
    sse_reply,
)
from tests.e2e.upstreams.anthropic_api import ERROR_TYPES

pytestmark = pytest.mark.e2e

CALLS = [
    ("Bash", {"command": "git status", "description": "Show working tree status"}),
    ("Read", {"file_path": "/repo/src/ünïcode.py", "limit": 20, "nested": {"a": [1, '}"']}}),
]
BROKEN = "incomplete chunked read|peer closed connection"  # the SDKs' HTTP library says so
MSG: Any = [{"role": "user", "content": "check the repo status"}]
CAPTURED = Path(__file__).resolve().parents[1] / "cases" / "claude_code" / "mock_responses"


@pytest.fixture
async def ant() -> AsyncIterator[tuple[ScriptedAnthropic, anthropic.AsyncAnthropic]]:
    async with ScriptedAnthropic() as up:
        sdk = anthropic.AsyncAnthropic(base_url=up.url, api_key="sk-test", max_retries=0)
        async with sdk:
            yield up, sdk


@pytest.fixture
async def oai() -> AsyncIterator[tuple[ScriptedOpenAI, openai.AsyncOpenAI]]:
    async with (
        ScriptedOpenAI() as up,
        openai.AsyncOpenAI(base_url=f"{up.url}/v1", api_key="sk-test", max_retries=0) as sdk,
    ):
        yield up, sdk


async def test_anthropic_non_stream_text_and_tool_use(ant: Any) -> None:
    up, sdk = ant
    up.enqueue(json_reply(anthropic_message("I'll check.", CALLS)))
    msg = await sdk.messages.create(model="claude-opus-4-8", max_tokens=100, messages=MSG)
    assert msg.content[0].type == "text" and msg.content[0].text == "I'll check."
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == CALLS
    assert msg.stop_reason == "tool_use" and msg.usage.output_tokens == 17


async def test_anthropic_stream_text(ant: Any) -> None:
    up, sdk = ant
    up.enqueue(sse_reply(anthropic_text_stream("Hello, streaming wörld!", split_into=5)))
    async with sdk.messages.stream(model="m", max_tokens=10, messages=MSG) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert len(texts) == 5 and "".join(texts) == "Hello, streaming wörld!"
    assert final.stop_reason == "end_turn" and final.usage.input_tokens == 42
    assert up.last.json()["stream"] is True


async def test_anthropic_stream_split_at_any_byte(ant: Any) -> None:
    up, sdk = ant
    events = anthropic_tool_use_stream(CALLS, text="Wörld ✓", split_json_into=4)
    up.enqueue(sse_reply(events).rechunked(7).paced(0.001))
    async with sdk.messages.stream(model="m", max_tokens=10, messages=MSG) as stream:
        final = await stream.get_final_message()
    assert final.content[0].text == "Wörld ✓"
    assert [(b.name, b.input) for b in final.content[1:]] == CALLS


@pytest.mark.parametrize("pieces", [1, 2, 7, 40])
async def test_anthropic_stream_tool_use_any_split(ant: Any, pieces: int) -> None:
    up, sdk = ant
    up.enqueue(sse_reply(anthropic_tool_use_stream(CALLS, text="On it.", split_json_into=pieces)))
    async with sdk.messages.stream(model="m", max_tokens=10, messages=MSG) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "On it."
    assert [(b.name, b.input) for b in final.content[1:]] == CALLS
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 17


async def test_anthropic_stream_thinking_block(ant: Any) -> None:
    up, sdk = ant
    up.enqueue(sse_reply(anthropic_stream([("thinking", "Let me think."), ("text", "Done.")])))
    async with sdk.messages.stream(model="m", max_tokens=10, messages=MSG) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].thinking == "Let me think."
    assert final.content[0].signature and final.content[1].text == "Done."


async def test_anthropic_count_tokens_and_models(ant: Any) -> None:
    _, sdk = ant
    counted = await sdk.messages.count_tokens(model="m", messages=MSG)
    assert counted.input_tokens > 0
    models = [m.id async for m in sdk.models.list()]
    assert "claude-opus-4-8" in models


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (403, anthropic.PermissionDeniedError),
        (404, anthropic.NotFoundError),
        (429, anthropic.RateLimitError),
        (500, anthropic.InternalServerError),
        (529, anthropic.InternalServerError),
    ],
)
async def test_anthropic_errors_raise_sdk_classes(ant: Any, status: int, exc: type) -> None:
    up, sdk = ant
    up.enqueue(
        anthropic_error(
            status, "Gateway rate limit exceeded for skill 'code-review'", retry_after=5
        )
    )
    with pytest.raises(exc) as info:
        await sdk.messages.create(model="m", max_tokens=10, messages=MSG)
    assert "code-review" in str(info.value) and info.value.status_code == status
    assert info.value.response.headers["retry-after"] == "5"
    assert info.value.body["error"]["type"] == ERROR_TYPES[status]


async def test_anthropic_html_error_and_stream_failures(ant: Any) -> None:
    up, sdk = ant
    up.enqueue(html_reply(502))
    with pytest.raises(anthropic.InternalServerError) as info:
        await sdk.messages.create(model="m", max_tokens=10, messages=MSG)
    assert info.value.status_code == 502
    events = anthropic_text_stream("never finished")
    up.enqueue(sse_reply([*events[:4], anthropic_error_event()]))
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        async with sdk.messages.stream(model="m", max_tokens=10, messages=MSG) as stream:
            await stream.get_final_message()
    up.enqueue(sse_reply(events).dropped(after=2))
    with pytest.raises(Exception, match=BROKEN):
        async with sdk.messages.stream(model="m", max_tokens=10, messages=MSG) as stream:
            await stream.get_final_message()


@pytest.mark.parametrize("name", ["stream_tool_use", "stream_final_text"])
async def test_builders_match_the_captured_sequences(ant: Any, name: str) -> None:
    raw = (CAPTURED / f"{name}.sse").read_bytes()
    captured = [
        json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")
    ]
    if name == "stream_tool_use":
        built_events = anthropic_tool_use_stream(
            [("Bash", {"command": "git status", "description": "Show working tree status"})],
            text="I'll check that for you.",
        )
    else:
        built_events = anthropic_text_stream("MOCK FINAL ANSWER.")
    built = [json.loads(e.split(b"data: ", 1)[1]) for e in built_events]
    assert [shape(e) for e in dedupe_deltas(built)] == [shape(e) for e in dedupe_deltas(captured)]
    up, sdk = ant
    up.enqueue(sse_raw_reply(raw))  # and the captured bytes replay through the SDK
    async with sdk.messages.stream(model="m", max_tokens=10, messages=MSG) as stream:
        assert (await stream.get_final_message()).stop_reason in ("tool_use", "end_turn")


async def test_openai_non_stream_text_and_tool_calls(oai: Any) -> None:
    up, sdk = oai
    up.enqueue(json_reply(openai_completion(None, CALLS)))
    done = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    calls = done.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == CALLS
    assert done.choices[0].finish_reason == "tool_calls" and done.usage.total_tokens == 59
    text = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert text.choices[0].message.content == ScriptedOpenAI.default_text


async def test_openai_stream_text_with_usage(oai: Any) -> None:
    up, sdk = oai
    up.enqueue(sse_reply(openai_text_stream("Hello, streaming wörld!", split_into=4)))
    stream = await sdk.chat.completions.create(model="m", messages=MSG, stream=True)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello, streaming wörld!"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 17


@pytest.mark.parametrize("interleave", [False, True])
async def test_openai_stream_tool_calls_accumulate(oai: Any, interleave: bool) -> None:
    up, sdk = oai
    events = openai_tool_calls_stream(CALLS, split_args_into=5, interleave=interleave)
    up.enqueue(sse_reply(events))
    async with sdk.chat.completions.stream(model="m", messages=MSG) as stream:
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == CALLS
    assert final.choices[0].finish_reason == "tool_calls" and final.usage.prompt_tokens == 42


async def test_openai_default_stream_honours_include_usage(oai: Any) -> None:
    _, sdk = oai
    stream = await sdk.chat.completions.create(model="m", messages=MSG, stream=True)
    assert all(c.usage is None for c in [c async for c in stream])
    opts: Any = {"include_usage": True}
    stream = await sdk.chat.completions.create(
        model="m", messages=MSG, stream=True, stream_options=opts
    )
    assert [c async for c in stream][-1].usage.total_tokens == 59
    assert "gpt-4o" in [m.id async for m in sdk.models.list()]


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
async def test_openai_errors_raise_sdk_classes(oai: Any, status: int, exc: type) -> None:
    up, sdk = oai
    up.enqueue(openai_error(status, "Skill 'code-review' may not use this", retry_after=1))
    with pytest.raises(exc) as info:
        await sdk.chat.completions.create(model="m", messages=MSG)
    assert "code-review" in info.value.message and info.value.status_code == status
    assert info.value.response.headers["retry-after"] == "1"


async def test_openai_html_and_broken_stream(oai: Any) -> None:
    up, sdk = oai
    up.enqueue(html_reply(502))
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(model="m", messages=MSG)
    up.enqueue(sse_reply(openai_text_stream("cut")).dropped(after=2))
    with pytest.raises(openai.APIConnectionError):  # the SDK wraps the transport error
        stream = await sdk.chat.completions.create(model="m", messages=MSG, stream=True)
        async for _ in stream:
            pass


def shape(event: dict[str, Any]) -> tuple[Any, ...]:
    """What must match between built and captured events: types, indexes and block kinds."""
    block = event.get("content_block", {}).get("type")
    delta = event.get("delta", {}).get("type")
    return (event["type"], event.get("index"), block, delta, sorted(event.get("message", {})))


def dedupe_deltas(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs of same-kind deltas collapse to one: the number of pieces is free."""
    out: list[dict[str, Any]] = []
    for e in events:
        if out and shape(e) == shape(out[-1]) and e["type"] == "content_block_delta":
            continue
        out.append(e)
    return out
