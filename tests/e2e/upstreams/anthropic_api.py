"""Anthropic Messages API bodies and SSE sequences, shaped like the captured ones.

Sequences follow reference/claude-code/mock_responses/*.sse and anthropic.types
(RawMessageStartEvent, RawContentBlock*Event, RawMessageDeltaEvent, ...).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from .replies import Reply, json_reply, sse_event

MODEL = "claude-opus-4-8"
ToolCall = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], str]
# A block of a scripted message: ("text", str) | ("thinking", str) | ("tool_use", name, input[, id])
Block = tuple[Any, ...]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_01{secrets.token_hex(12)}"


def split_text(text: str, parts: int) -> list[str]:
    """``text`` cut into ``parts`` nearly equal pieces (fewer if text is short)."""
    parts = max(1, min(parts, len(text) or 1))
    size, rest = divmod(len(text), parts)
    out, pos = [], 0
    for i in range(parts):
        end = pos + size + (1 if i < rest else 0)
        out.append(text[pos:end])
        pos = end
    return out


def usage(input_tokens: int = 42, output_tokens: int = 17) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _tool_block(call: Sequence[Any]) -> dict[str, Any]:
    tool_id = call[2] if len(call) > 2 else new_id("toolu")
    return {"type": "tool_use", "id": tool_id, "name": call[0], "input": dict(call[1])}


def anthropic_message(
    text: str | None = None,
    tool_calls: Iterable[ToolCall] = (),
    *,
    model: str = MODEL,
    stop_reason: str | None = None,
    input_tokens: int = 42,
    output_tokens: int = 17,
) -> dict[str, Any]:
    """A non-streamed Message: optional text block, then one tool_use block per call."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text is not None else []
    content += [_tool_block(c) for c in tool_calls]
    has_tools = any(b["type"] == "tool_use" for b in content)
    return {
        "id": new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if has_tools else "end_turn"),
        "stop_sequence": None,
        "usage": usage(input_tokens, output_tokens),
    }


def _ev(data: dict[str, Any]) -> bytes:
    return sse_event(data, data["type"])


def _block_events(index: int, block: Block, split: int) -> list[bytes]:
    kind = block[0]
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": t} for t in split_text(block[1], split)]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": t} for t in split_text(block[1], split)]
        deltas.append({"type": "signature_delta", "signature": "EqQBCgIYAhIM" + "A" * 40})
    elif kind == "tool_use":
        tool = _tool_block(block[1:])
        start = {**tool, "input": {}}
        raw = orjson.dumps(tool["input"]).decode()
        deltas = [{"type": "input_json_delta", "partial_json": ""}]  # as the API does
        deltas += [{"type": "input_json_delta", "partial_json": p} for p in split_text(raw, split)]
    else:
        raise ValueError(f"unknown block kind {kind!r}")
    events = [_ev({"type": "content_block_start", "index": index, "content_block": start})]
    events += [_ev({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    events.append(_ev({"type": "content_block_stop", "index": index}))
    return events


def anthropic_stream(
    blocks: Iterable[Block],
    *,
    model: str = MODEL,
    split_into: int = 3,
    stop_reason: str | None = None,
    input_tokens: int = 42,
    output_tokens: int = 17,
    ping: bool = True,
) -> list[bytes]:
    """The full event sequence for ``blocks``; each block's text/JSON split into N deltas."""
    blocks = list(blocks)
    message = anthropic_message(model=model, input_tokens=input_tokens, output_tokens=1)
    message["stop_reason"] = None
    events = [_ev({"type": "message_start", "message": message})]
    if ping:
        events.append(_ev({"type": "ping"}))
    for index, block in enumerate(blocks):
        events += _block_events(index, block, split_into)
    has_tools = any(b[0] == "tool_use" for b in blocks)
    delta = {
        "stop_reason": stop_reason or ("tool_use" if has_tools else "end_turn"),
        "stop_sequence": None,
    }
    events.append(
        _ev({"type": "message_delta", "delta": delta, "usage": {"output_tokens": output_tokens}})
    )
    events.append(_ev({"type": "message_stop"}))
    return events


def anthropic_text_stream(text: str, *, split_into: int = 3, **kw: Any) -> list[bytes]:
    """message_start, ping, one text block in ``split_into`` deltas, message_delta, message_stop."""
    return anthropic_stream([("text", text)], split_into=split_into, **kw)


def anthropic_tool_use_stream(
    calls: Iterable[ToolCall], *, text: str | None = None, split_json_into: int = 3, **kw: Any
) -> list[bytes]:
    """Optional text block, then one tool_use block per call with its input JSON in N pieces."""
    blocks: list[Block] = [("text", text)] if text is not None else []
    blocks += [("tool_use", *c) for c in calls]
    return anthropic_stream(blocks, split_into=split_json_into, **kw)


def anthropic_error_body(status: int, message: str, type_: str | None = None) -> dict[str, Any]:
    error_type = type_ or ERROR_TYPES.get(status, "api_error")
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": new_id("req"),
    }


def anthropic_error(
    status: int,
    message: str = "scripted error",
    *,
    type_: str | None = None,
    retry_after: float | None = None,
) -> Reply:
    """An error answer as the API sends it (request-id header, optional retry-after)."""
    headers = {"request-id": new_id("req")}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return json_reply(anthropic_error_body(status, message, type_), status, headers)


def anthropic_error_event(message: str = "Overloaded", type_: str = "overloaded_error") -> bytes:
    """The ``event: error`` the API sends when a stream fails after it started."""
    return sse_event({"type": "error", "error": {"type": type_, "message": message}}, "error")
