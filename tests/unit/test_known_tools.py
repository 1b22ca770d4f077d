"""Bodies repeating a tools array seen before are parsed around it (gateway/formats/known_tools.py):
the view must be exactly the whole parse's, and every trick that could make the gateway judge
one array while the provider reads another must fall back to the whole parse or be refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.formats.canonical import ToolChoiceEdit
from gateway.formats.known_tools import KnownTools
from gateway.pipeline.context import RequestContext
from gateway.pipeline.parse import parse_body
from gateway.pipeline.wire import ANTHROPIC, OPENAI

CAPTURED = Path(__file__).resolve().parents[2] / "bench" / "data" / "claude_code_turn1.json"
TURN1: dict[str, Any] = json.loads(CAPTURED.read_text())["body"]
TOOLS = TURN1["tools"]
OTHER_TOOLS = [{**t, "description": "other " + t.get("description", "")} for t in TOOLS]


def _ctx(raw: bytes, wire: Any = ANTHROPIC) -> RequestContext:
    endpoint = "/v1/messages" if wire is ANTHROPIC else "/v1/chat/completions"
    fmt = "anthropic" if wire is ANTHROPIC else "openai"
    return RequestContext("req_1", endpoint, fmt, {}, raw, wire=wire)


def _parsed(raw: bytes, known: KnownTools, wire: Any = ANTHROPIC) -> RequestContext:
    ctx = _ctx(raw, wire)
    parse_body(ctx, known)
    return ctx


def _warm(known: KnownTools, body: dict[str, Any] = TURN1) -> None:
    _parsed(orjson.dumps(body), known)


def test_a_repeated_array_is_skipped_and_the_view_is_the_whole_parse() -> None:
    known = KnownTools()
    raw = orjson.dumps(TURN1)
    assert known.split(raw) is None  # nothing seen yet
    first = _parsed(raw, known)
    assert known.split(raw) is not None  # remembered
    turn2 = {**TURN1, "messages": [*TURN1["messages"], {"role": "assistant", "content": "ok"}]}
    again = _parsed(orjson.dumps(turn2), known)
    assert again.body == orjson.loads(orjson.dumps(turn2))
    assert again.request is not None and first.request is not None
    assert [t.name for t in again.request.tools] == [t.name for t in first.request.tools]
    assert (again.model, again.stream, again.cwd) == (first.model, first.stream, first.cwd)


def test_small_or_non_canonical_bodies_are_not_remembered() -> None:
    known = KnownTools()
    _parsed(orjson.dumps({**TURN1, "tools": TOOLS[:1]}), known)  # a small array
    _parsed(json.dumps(TURN1, indent=1).encode(), known)  # not orjson's form
    assert known.split(orjson.dumps(TURN1)) is None


@pytest.mark.parametrize("known_first", [True, False])
def test_a_second_top_level_tools_key_is_refused(known_first: bool) -> None:
    known = KnownTools()
    _warm(known)
    pair = [b'"tools":' + orjson.dumps(TOOLS), b'"tools":' + orjson.dumps(OTHER_TOOLS)]
    if not known_first:
        pair.reverse()
    raw = b'{"model":"m","messages":[],' + b",".join(pair) + b"}"
    with pytest.raises(GatewayError, match="duplicate object keys"):
        _parsed(raw, known)


def test_a_duplicate_key_outside_the_known_array_is_refused() -> None:
    known = KnownTools()
    _warm(known)
    raw = orjson.dumps(TURN1).replace(b'{"model":', b'{"model":"x","model":', 1)
    with pytest.raises(GatewayError, match="duplicate object keys"):
        _parsed(raw, known)


def test_a_known_array_nested_elsewhere_does_not_stand_in_for_the_top_level_one() -> None:
    known = KnownTools()
    _warm(known)
    smuggled = {"role": "user", "content": [{"type": "text", "text": "hi", "tools": TOOLS}]}
    body = {**TURN1, "messages": [smuggled], "tools": OTHER_TOOLS[:2]}
    ctx = _parsed(orjson.dumps(body), known)
    assert ctx.body == orjson.loads(orjson.dumps(body))
    assert ctx.request is not None and len(ctx.request.tools) == 2


def test_a_guessed_placeholder_gets_no_array() -> None:
    known = KnownTools()
    _warm(known)
    guess = "\x00skillwarden-known-tools-" + "0" * 32
    nested = {"role": "user", "content": [{"type": "text", "text": "hi", "tools": TOOLS}]}
    body = {**TURN1, "messages": [nested], "tools": guess}
    with pytest.raises(GatewayError, match="'tools' must be a list"):
        _parsed(orjson.dumps(body), known)
    body["tools"] = known.placeholder  # even the real token, were it known, gets no array
    with pytest.raises(GatewayError, match="'tools' must be a list"):
        _parsed(orjson.dumps(body), known)


def test_malformed_rest_is_reported_as_by_the_whole_parse() -> None:
    known = KnownTools()
    _warm(known)
    raw = orjson.dumps(TURN1).replace(b'"model":"', b'"model":', 1)  # breaks the JSON
    with pytest.raises(GatewayError, match="invalid request body: .*not valid JSON"):
        _parsed(raw, known)


def test_edits_never_change_the_shared_array() -> None:
    known = KnownTools()
    _warm(known)
    pristine = copy.deepcopy(TOOLS)
    for _ in range(2):
        ctx = _parsed(orjson.dumps(TURN1), known)
        assert ctx.request is not None and ctx.wire is not None
        kept = [t.name for t in ctx.request.tools][:2]
        edited = ctx.wire.edit_tools(ctx.request.body, kept, ToolChoiceEdit.KEEP)
        assert [t["name"] for t in edited["tools"]] == kept
    found = known.split(orjson.dumps(TURN1))
    assert found is not None and found[1] == pristine


def test_openai_bodies_use_it_too() -> None:
    known = KnownTools()
    functions = [
        {"type": "function", "function": {"name": f"f{i}", "description": "d" * 300}}
        for i in range(20)
    ]
    body = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "tools": functions}
    _parsed(orjson.dumps(body), known, OPENAI)
    assert known.split(orjson.dumps(body)) is not None
    ctx = _parsed(orjson.dumps(body), known, OPENAI)
    assert ctx.request is not None and [t.name for t in ctx.request.tools][:2] == ["f0", "f1"]


def test_remembering_is_rate_limited() -> None:
    now = [100.0]
    known = KnownTools(attempt_every_s=1.0, clock=lambda: now[0])
    other = {**TURN1, "tools": OTHER_TOOLS}
    _warm(known, other)  # remembered: the first attempt
    _warm(known)  # within the second: not even tried (a client changing its array each time)
    assert known.split(orjson.dumps(TURN1)) is None
    now[0] += 1.0
    _warm(known)
    assert known.split(orjson.dumps(TURN1)) is not None
    assert known.split(orjson.dumps(other)) is not None


def test_the_cache_is_bounded() -> None:
    known = KnownTools(max_entries=2, attempt_every_s=0.0)
    bodies = [{**TURN1, "tools": [{**TOOLS[0], "name": f"T{i}"}, *TOOLS[1:]]} for i in range(3)]
    for body in bodies:
        _warm(known, body)
    assert known.split(orjson.dumps(bodies[0])) is None  # the oldest went
    assert all(known.split(orjson.dumps(b)) is not None for b in bodies[1:])


# -- property: with the cache warm, every body gets exactly the answer a cold parse gives ----
_KNOWN = orjson.dumps(TOOLS)
_SMALL = orjson.dumps(TOOLS[:1])
_PAIRS = {
    "model": b'"model":"claude-opus-4-8"',
    "messages": b'"messages":[{"role":"user","content":"hi"}]',
    "nested": b'"messages":[{"role":"user","content":[{"type":"text","text":"x","tools":'
    + _KNOWN
    + b"}]}]",
    "known": b'"tools":' + _KNOWN,
    "other": b'"tools":' + orjson.dumps(OTHER_TOOLS),
    "small": b'"tools":' + _SMALL,
    "string": b'"tools":"' + b"\\u0000skillwarden-known-tools-" + b"0" * 32 + b'"',
    "spaced": b'"tools" : ' + _KNOWN,
    "max": b'"max_tokens":100',
    "dup_model": b'"model":"other"',
}


def _outcome(raw: bytes, known: KnownTools) -> tuple[str, object]:
    try:
        ctx = _parsed(raw, known)
    except GatewayError as exc:
        return ("refused", exc.message)
    assert ctx.request is not None
    return ("parsed", (ctx.body, [t.name for t in ctx.request.tools], ctx.model, ctx.cwd))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(sorted(_PAIRS)), min_size=1, max_size=6))
def test_warm_and_cold_parses_agree(keys: list[str]) -> None:
    raw = b"{" + b",".join(_PAIRS[k] for k in keys) + b"}"
    warm = KnownTools()
    _warm(warm)
    assert _outcome(raw, warm) == _outcome(raw, KnownTools())
