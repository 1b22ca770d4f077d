"""Pipeline stages in isolation: key-header rule, body parsing, X-Skill, guard, tools, finish."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.formats.known_tools import KnownTools
from gateway.pipeline.authenticate import presented_key
from gateway.pipeline.bind_skill import parse_skill_header
from gateway.pipeline.context import RequestContext
from gateway.pipeline.finish import finish
from gateway.pipeline.guard import guard_prompt, guarded_texts
from gateway.pipeline.parse import has_duplicate_keys, parse_body
from gateway.pipeline.wire import ANTHROPIC
from gateway.runtime import CompiledGuard
from gateway.settings import GuardSettings, Settings
from gateway.state.audit import AuditRecord
from gateway.upstream.cost import PriceBook


def _ctx(body: Any = None, headers: dict[str, str] | None = None) -> RequestContext:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return RequestContext("req_1", "/v1/messages", "anthropic", headers or {}, raw, wire=ANTHROPIC)


# -- authenticate: one key, or both headers carrying the same key ---------------------------
@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x-api-key": "k1"}, "k1"),
        ({"authorization": "Bearer k1"}, "k1"),
        ({"authorization": "bearer  k1 "}, "k1"),
        ({"x-api-key": "k1", "authorization": "Bearer k1"}, "k1"),
    ],
)
def test_presented_key(headers: dict[str, str], key: str) -> None:
    assert presented_key(headers) == key


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": ""},
        {"authorization": "Bearer"},
        {"authorization": "Basic k1"},
        {"x-api-key": "k1", "authorization": "Bearer k2"},
    ],
)
def test_presented_key_refused(headers: dict[str, str]) -> None:
    with pytest.raises(GatewayError) as err:
        presented_key(headers)
    assert (err.value.code, err.value.status) == ("unauthenticated", 401)


# -- parse: duplicate keys are found exactly -----------------------------------------------
@pytest.mark.parametrize(
    ("raw", "dup"),
    [
        (b'{"a": 1, "b": {"c": 2}}', False),
        (b'{"a": "x\\":", "b": 1}', False),  # an escaped quote before a colon is no key
        (b'{"a": "\\\\", "b": 1}', False),
        (b'{"a": 1, "a": 2}', True),
        (b'{"a": 1, "a" : 2}', True),
        (b'{"a": "x\\":", "a": 2}', True),
        (b'[{"k": 1}, {"k": 1, "k": 2}]', True),
        (b'{"a\\\\": 1, "a\\\\" :2}', True),
    ],
)
def test_duplicate_keys(raw: bytes, dup: bool) -> None:
    assert has_duplicate_keys(raw, orjson.loads(raw)) is dup


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(st.tuples(st.sampled_from(["a", "b", '"', 'a"', "\\", ":"]), inner), max_size=4)
    ),
    max_leaves=12,
)


def _dump(value: Any, spaced: bool) -> str:
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        sep = " : " if spaced else ":"
        return "{" + ",".join(json.dumps(k) + sep + _dump(v, spaced) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v, spaced) for v in value) + "]"
    return json.dumps(value)


@given(_json, st.booleans())
def test_duplicate_keys_agree_with_the_stdlib(value: Any, spaced: bool) -> None:
    raw = _dump(value, spaced).encode()

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len(dict(pairs)) != len(pairs):
            raise KeyError
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=hook)
        expected = False
    except KeyError:
        expected = True
    assert has_duplicate_keys(raw, orjson.loads(raw)) is expected


def test_parse_body_sets_cwd_from_header_first() -> None:
    system = "env:\n - Primary working directory: /repo\n"
    body = {"model": "m", "messages": [], "system": system}
    ctx = _ctx(body, {"x-project-dir": "/elsewhere"})
    parse_body(ctx, KnownTools())
    assert ctx.cwd == "/elsewhere"
    ctx = _ctx(body)
    parse_body(ctx, KnownTools())
    assert ctx.cwd == "/repo" and ctx.model == "m" and ctx.stream is False


@pytest.mark.parametrize(
    "raw", [b"", b"{", b'{"model": 1}', b'{"model":"m","messages":[],"a":NaN}']
)
def test_parse_body_refuses(raw: bytes) -> None:
    with pytest.raises(GatewayError) as err:
        parse_body(_ctx(raw), KnownTools())
    assert (err.value.code, err.value.status) == ("invalid_request", 400)


# -- X-Skill -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "parsed"),
    [
        ([], None),
        (["code-review"], ("code-review", None)),
        (["code-review@1"], ("code-review", "1")),
        ([" pdf-processing@2.0.1 "], ("pdf-processing", "2.0.1")),
    ],
)
def test_skill_header(values: list[str], parsed: Any) -> None:
    assert parse_skill_header(values) == parsed


@pytest.mark.parametrize(
    "values",
    [["a", "b"], ["a,b"], ["Code-Review"], ["a--b"], ["-a"], ["a@"], ["a@1@2"], ["x" * 65], [""]],
)
def test_skill_header_refused(values: list[str]) -> None:
    with pytest.raises(GatewayError) as err:
        parse_skill_header(values)
    assert (err.value.code, err.value.status) == ("invalid_request", 400)


# -- prompt guard ----------------------------------------------------------------------------
HISTORY: Any = {
    "system": "sys secret",
    "messages": [
        {"role": "user", "content": "first ask"},
        {"role": "assistant", "content": [{"type": "text", "text": "answer"}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r"}]},
            {"type": "text", "text": "latest"},
        ]},
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("roles", "whole", "texts"),
    [
        ("user", False, ["r", "latest"]),
        ("user", True, ["first ask", "r", "latest"]),
        ("all", True, ["sys secret", "first ask", "answer", "r", "latest"]),
    ],
)
def test_guarded_texts(roles: Any, whole: bool, texts: list[str]) -> None:
    guard = CompiledGuard.compile(GuardSettings(roles=roles, whole_history=whole))
    assert list(guarded_texts(HISTORY, guard)) == texts


class _Rt:
    def __init__(self, guard: GuardSettings) -> None:
        self.guard = CompiledGuard.compile(guard)


def test_guard_deny_and_allow() -> None:
    ctx = _ctx(HISTORY)
    ctx.body, ctx.skill = HISTORY, "s"
    guard_prompt(ctx, _Rt(GuardSettings(deny=["(?i)first"])))  # type: ignore[arg-type]
    with pytest.raises(GatewayError, match="deny pattern") as err:
        guard_prompt(ctx, _Rt(GuardSettings(deny=["lat.st"])))  # type: ignore[arg-type]
    assert err.value.code == "prompt_blocked" and err.value.status == 403
    with pytest.raises(GatewayError, match="none of the allow"):
        guard_prompt(ctx, _Rt(GuardSettings(allow=["^review"])))  # type: ignore[arg-type]


# -- finish: exactly one record ----------------------------------------------------------------
class _Audit:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []

    async def append(self, record: AuditRecord) -> None:
        self.records.append(record)


class _FinishRt:
    def __init__(self) -> None:
        self.audit = _Audit()
        self.prices = PriceBook({})  # finish prices the request (nothing configured here)
        self.settings = Settings()  # finish reads audit.store_bodies (off by default)


async def test_finish_writes_one_record() -> None:
    rt = _FinishRt()
    ctx = _ctx({})
    await finish(ctx, rt, GatewayError("unknown_skill", 403, "no such skill", rule="r"))  # type: ignore[arg-type]
    await finish(ctx, rt, None)  # type: ignore[arg-type]
    (record,) = rt.audit.records
    assert record.status == 403 and record.decision == "deny"
    assert record.reasons == ("unknown_skill: no such skill [rule: r]",)
