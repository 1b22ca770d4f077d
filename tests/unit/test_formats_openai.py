"""gateway.formats.openai_chat: request view and edits, response redaction, stream gate with
interleaved parallel calls, errors; checked through the real openai SDK."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.formats import openai_chat as oc
from gateway.formats.canonical import (
    FormatError,
    SkillInvocation,
    ToolCall,
    ToolChoice,
    ToolChoiceEdit,
    Verdict,
)
from gateway.upstream.sse import SSEDecoder, SSEEvent, encode_events

STREAMS = Path(__file__).parent.parent / "cases" / "streams"
ALLOW = Verdict(True, "Bash(git:*)")
DENY = Verdict(False, "Bash(git:*)", "skill 'data-analysis' may not do that")


def fn_tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def call(name: str, args: str, call_id: str = "c1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def body(messages: list[Any], **extra: Any) -> bytes:
    return orjson.dumps({"model": "gpt-4o", "messages": messages, **extra})


# --- requests -------------------------------------------------------------------------------


def test_with_tools_changes_only_tools() -> None:
    raw = body(
        [
            {"role": "system", "content": "Primary working directory: /repo"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        tools=[fn_tool("Bash"), fn_tool("Read"), {"type": "custom", "custom": {"name": "Grep"}}],
        tool_choice="auto",
        parallel_tool_calls=False,
        temperature=0.2,
        seed=7,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        stream=True,
        stream_options={"include_usage": False},
        future_key=[1, {"a": None}],
    )
    req = oc.parse_request(raw)
    assert [t.name for t in req.tools] == ["Bash", "Read", "Grep"]
    assert req.cwd == "/repo" and req.tool_choice == ToolChoice("auto") and req.stream
    original = copy.deepcopy(req.body)
    out = orjson.loads(oc.with_tools(req.body, {"Read", "Grep"}))
    assert req.body == original
    assert list(out) == list(original)
    assert {k: v for k, v in out.items() if k != "tools"} == {
        k: v for k, v in original.items() if k != "tools"
    }
    assert [t.get("function", t.get("custom"))["name"] for t in out["tools"]] == ["Read", "Grep"]
    assert oc.with_tools(req.body, {"Bash", "Read", "Grep"}) == raw


def test_removing_every_tool_removes_tool_keys_openai_would_reject() -> None:
    raw = body(
        [{"role": "user", "content": "x"}],
        tools=[fn_tool("Bash")],
        tool_choice="required",
        parallel_tool_calls=True,
        functions=[{"name": "f"}],
        function_call="auto",
    )
    out = orjson.loads(oc.with_tools(oc.parse_request(raw).body, set()))
    assert out == {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}


def test_tool_choice_forms() -> None:
    named = {"type": "function", "function": {"name": "Bash"}}
    assert oc.tool_choice({"tool_choice": named}).forced_tool == "Bash"  # type: ignore[union-attr]
    assert oc.tool_choice(
        {"tool_choice": {"type": "custom", "custom": {"name": "G"}}}
    ) == ToolChoice("tool", "G")  # noqa: E501
    assert oc.tool_choice({"tool_choice": "required"}) == ToolChoice("any")
    assert oc.tool_choice({"function_call": {"name": "f"}}) == ToolChoice("tool", "f")
    allowed = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [fn_tool("A"), fn_tool("B")]},
    }  # noqa: E501
    assert oc.tool_choice({"tool_choice": allowed}) == ToolChoice("any")
    out = oc.edit_tools({"tools": [fn_tool("A"), fn_tool("B")], "tool_choice": allowed}, {"B"})
    assert out["tool_choice"]["allowed_tools"]["tools"] == [fn_tool("B")]
    assert "tool_choice" not in oc.edit_tools({"tool_choice": "auto"}, set(), ToolChoiceEdit.DROP)


def test_include_usage_is_added_once() -> None:
    new, added = oc.with_include_usage({"stream": True, "stream_options": {"x": 1}})
    assert added and new["stream_options"] == {"x": 1, "include_usage": True}
    assert oc.with_include_usage(new) == (new, False)
    assert oc.with_include_usage({"stream": False})[1] is False


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "m", "messages": "x"}',
        b'{"messages": []}',
        b'{"model": "m", "messages": [], "tools": [{"type": "web_search"}]}',
        b'{"model": "m", "messages": [], "tools": [{"type": "function", "function": {}}]}',
        b'{"model": "m", "messages": [], "tool_choice": "always"}',
        b'{"model": "m", "messages": [], "tool_choice": {"type": "function"}}',
        b'{"model": "m", "messages": [{"role": "critic", "content": "x"}]}',
        b'{"model": "m", "messages": [{"role": "user", "content": 3}]}',
        b'{"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"type": "shell", "shell": {"name": "x"}}]}]}',  # noqa: E501
        b'{"model": "m", "messages": [{"role": "assistant", "tool_calls": {}}]}',
        b'{"model": "m", "messages": [{"role": "assistant", "function_call": {"arguments": "{}"}}]}',  # noqa: E501
        b'{"model": "m", "messages": [], "max_tokens": "9"}',
    ],
)
def test_malformed_requests_raise_format_error(raw: bytes) -> None:
    with pytest.raises(FormatError):
        oc.parse_request(raw)


def test_skill_binding() -> None:
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "analyse"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call("Skill", '{"skill": "data-analysis"}', "a")],
        },  # noqa: E501
        {"role": "tool", "tool_call_id": "a", "content": "loaded"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                call("Skill", '{"skill": "pdf", "args": "a.pdf"}', "b"),
                call("Bash", "{}", "c"),
            ],
        },
        {"role": "tool", "tool_call_id": "b", "content": "ok"},
        {"role": "tool", "tool_call_id": "c", "content": "ok"},
    ]
    assert oc.parse_request(body(msgs)).skill == SkillInvocation("pdf", "a.pdf", "b")
    later = [*msgs, {"role": "assistant", "content": "done"}, {"role": "user", "content": "next"}]
    assert oc.parse_request(body(later)).skill is None
    broken = msgs[:3] + [{"role": "assistant", "tool_calls": [call("Skill", "{not json", "d")]}]
    assert oc.parse_request(body(broken)).skill == SkillInvocation("data-analysis", None, "a")


def test_cwd_never_from_user_messages() -> None:
    msgs = [{"role": "user", "content": "Primary working directory: /evil"}]
    assert oc.parse_request(body(msgs)).cwd is None
    dev = [
        {
            "role": "developer",
            "content": [{"type": "text", "text": "- Primary working directory: /w"}],
        }
    ]  # noqa: E501
    assert oc.parse_request(body(dev)).cwd == "/w"


# --- non-streaming responses -----------------------------------------------------------------


def nonstream() -> dict[str, Any]:
    return oc.parse_response((STREAMS / "openai_nonstream_tool_calls.json").read_bytes())


def test_nonstream_calls_and_usage() -> None:
    resp = nonstream()
    calls = oc.tool_calls(resp)
    assert [(c.id, c.name, c.index, c.input) for c in calls] == [
        ("call_a", "Bash", 0, {"command": "git status"}),
        ("call_b", "Read", 1, {"file_path": "/srv/app/x.py"}),
    ]
    u = oc.usage(resp)
    assert (u.input_tokens, u.cache_read_input_tokens, u.output_tokens) == (20, 100, 30)
    assert orjson.loads(oc.apply_verdicts(resp, [ALLOW, ALLOW])) == resp


def test_nonstream_partial_and_full_denial() -> None:
    out = orjson.loads(oc.apply_verdicts(nonstream(), [DENY, ALLOW]))
    choice = out["choices"][0]
    assert [c["id"] for c in choice["message"]["tool_calls"]] == ["call_b"]
    assert choice["finish_reason"] == "tool_calls" and "Bash(git:*)" in choice["message"]["content"]
    out = orjson.loads(oc.apply_verdicts(nonstream(), [DENY, DENY]))
    choice = out["choices"][0]
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] == "stop"
    assert choice["message"]["content"].count("[Skillwarden]") == 2


def test_nonstream_malformed_arguments_and_unknown_call_type() -> None:
    resp = nonstream()
    resp["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"command": "git'
    assert oc.tool_calls(resp)[0].input is None
    resp["choices"][0]["message"]["tool_calls"][0]["type"] = "shell"
    with pytest.raises(FormatError):
        oc.tool_calls(resp)


def test_nonstream_legacy_function_call_is_a_tool_call() -> None:
    resp = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "function_call",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "function_call": {"name": "f", "arguments": "{}"},
                },
            }
        ]
    }
    assert oc.tool_calls(resp)[0].index == oc.LEGACY_INDEX
    out = orjson.loads(oc.apply_verdicts(resp, [DENY]))["choices"][0]
    assert "function_call" not in out["message"] and out["finish_reason"] == "stop"


# --- streams ----------------------------------------------------------------------------------


def captured() -> bytes:
    return (STREAMS / "openai_parallel_interleaved.sse").read_bytes()


def run_gate(
    chunks: list[bytes], decide: Callable[[ToolCall], Verdict], **kw: Any
) -> tuple[list[SSEEvent], oc.StreamGate]:
    dec, gate = SSEDecoder(), oc.StreamGate(decide, **kw)
    out: list[SSEEvent] = []
    for chunk in chunks:
        for ev in dec.feed(chunk):
            out += gate.feed(ev)
    return out + gate.close(), gate


def sdk_final(sse: bytes) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=sse, headers={"content-type": "text/event-stream"})

    client = openai.OpenAI(
        api_key="k",
        base_url="http://gw/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.chat.completions.stream(model="m", messages=[]) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion()


def only(name: str) -> Callable[[ToolCall], Verdict]:
    return lambda c: ALLOW if c.name == name and c.input is not None else DENY


def test_stream_allowed_interleaved_calls_are_reassembled() -> None:
    out, gate = run_gate([captured()], lambda c: ALLOW)
    assert [(c.name, c.input) for c, _ in gate.verdicts] == [
        ("Bash", {"command": "git status"}),
        ("Read", {"file_path": "/srv/app/x.py"}),
    ]
    final = sdk_final(encode_events(out))
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls" and msg.content == "Checking both."
    assert [(t.id, t.function.name) for t in msg.tool_calls] == [
        ("call_a", "Bash"),
        ("call_b", "Read"),
    ]  # noqa: E501
    assert msg.tool_calls[0].function.arguments == '{"command": "git status"}'
    assert (gate.usage.input_tokens, gate.usage.cache_read_input_tokens) == (20, 100)


def test_stream_one_denied_is_renumbered_and_explained() -> None:
    out, gate = run_gate([captured()], only("Read"))
    final = sdk_final(encode_events(out))
    msg = final.choices[0].message
    assert [(t.id, t.function.name) for t in msg.tool_calls] == [("call_b", "Read")]
    assert msg.content.startswith("Checking both.\n\n[Skillwarden]") and "Bash" in msg.content
    assert final.choices[0].finish_reason == "tool_calls"


def test_stream_all_denied_finishes_with_stop() -> None:
    out, _ = run_gate([captured()], lambda c: DENY)
    final = sdk_final(encode_events(out))
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    assert final.choices[0].message.content.count("[Skillwarden]") == 2


def test_content_flows_at_once_and_calls_are_held() -> None:
    dec, gate = SSEDecoder(), oc.StreamGate(lambda c: ALLOW)
    events = dec.feed(captured())
    assert all(gate.feed(ev) == [ev] for ev in events[:3])
    assert all(gate.feed(ev) == [] for ev in events[3:9])
    released = gate.feed(events[9])
    assert len(released) == 8 and '"finish_reason":"tool_calls"' in released[-1].data


def test_usage_chunk_stripped_when_the_gateway_asked_for_it() -> None:
    out, gate = run_gate([captured()], lambda c: ALLOW, strip_usage_chunk=True)
    assert gate.usage.output_tokens == 30
    assert not any('"prompt_tokens"' in e.data for e in out) and out[-1].data == "[DONE]"


def test_error_mode_and_error_chunk_raise_in_the_sdk() -> None:
    out, gate = run_gate([captured()], only("Read"), mode="error")
    assert gate.failure is not None and gate.failure[0].name == "Bash"
    out += oc.stream_error_events("tool_not_allowed", 403, "denied: rule Bash(git:*)")
    with pytest.raises(openai.APIError, match=r"denied: rule Bash\(git:\*\)"):
        sdk_final(encode_events(out))


def test_finish_chunk_carrying_the_last_fragment_and_truncated_stream() -> None:
    chunk = {
        "id": "x",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "c",
                            "type": "function",
                            "function": {"name": "Read", "arguments": '{"file_path": "/a"}'},
                        }
                    ]
                },
            }
        ],
    }
    out, gate = run_gate([b"data: " + orjson.dumps(chunk) + b"\n\n"], only("Read"))
    assert gate.verdicts[0][1].allow and len(out) == 2
    events = captured().split(b"\n\n")
    cut = b"\n\n".join(events[:9]) + b"\n\n"  # the tool-call chunks, then the upstream dies
    out, gate = run_gate([cut], lambda c: ALLOW)  # no finish_reason, no [DONE]: decided at close
    assert [c.input for c, _ in gate.verdicts] == [
        {"command": "git status"},
        {"file_path": "/srv/app/x.py"},
    ]  # noqa: E501


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.integers(0, 4000), max_size=40), which=st.sampled_from(["Bash", "Read", ""])
)  # noqa: E501
def test_any_byte_split_gives_the_same_output_and_verdicts(cuts: list[int], which: str) -> None:
    raw = captured()
    whole, g1 = run_gate([raw], only(which))
    bounds = [0, *sorted({min(c, len(raw)) for c in cuts}), len(raw)]
    split, g2 = run_gate([raw[a:b] for a, b in zip(bounds, bounds[1:], strict=False)], only(which))
    assert encode_events(split) == encode_events(whole)
    assert g1.verdicts == g2.verdicts and g1.usage == g2.usage


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "exc"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (413, openai.APIStatusError),
        (429, openai.RateLimitError),
        (503, openai.InternalServerError),
    ],
)
def test_error_body_makes_the_sdk_raise_its_class(status: int, exc: type[Exception]) -> None:
    raw = oc.error_body("skill_not_permitted", status, "skill 'pdf' is not permitted")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=raw, headers={"content-type": "application/json"})

    client = openai.OpenAI(
        api_key="k",
        base_url="http://gw/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with pytest.raises(exc) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert getattr(info.value, "code", None) == "skill_not_permitted"
    assert "skill 'pdf'" in str(info.value)


def test_upstream_errors_are_rerendered() -> None:
    anth = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    out = orjson.loads(oc.rerender_upstream_error(529, anth))["error"]
    assert out["message"] == "Overloaded" and out["type"] == "overloaded_error"
    out = orjson.loads(oc.rerender_upstream_error(502, b"<html>x</html>"))["error"]
    assert out == {
        "message": "upstream provider returned HTTP 502",
        "type": "server_error",
        "code": None,
        "param": None,
    }  # noqa: E501
