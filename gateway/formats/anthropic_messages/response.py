"""Anthropic Messages responses (non-streaming): tool calls out, verdicts in, usage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from gateway.formats.canonical import (
    FormatError,
    Json,
    ToolCall,
    Usage,
    Verdict,
    as_int,
    denial_text,
    loads_object,
)

__all__ = [
    "apply_verdicts",
    "block_tool_call",
    "is_tool_call_block",
    "check_response",
    "parse_response",
    "tool_calls",
    "usage",
    "usage_from",
]

_PASSIVE = frozenset({"text", "thinking", "redacted_thinking", "container_upload", "compaction"})


def parse_response(raw: bytes) -> Json:
    """Parse a message body and check its content blocks; FormatError when malformed."""
    return check_response(loads_object(raw, "upstream response"))


def check_response(body: object) -> Json:
    """parse_response() of a body already parsed; FormatError when malformed."""
    if not isinstance(body, dict):
        raise FormatError("upstream response must be a JSON object")
    content = body.get("content")
    if not isinstance(content, list):
        raise FormatError("upstream response has no 'content' list")
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise FormatError(f"upstream content[{i}] must be an object with a string 'type'")
        is_tool_call_block(block["type"])
    return body


def is_tool_call_block(kind: str) -> bool:
    """True for blocks that carry a tool call; FormatError for unknown types (fail closed)."""
    if kind == "tool_use" or kind.endswith("_tool_use"):
        return True
    if kind in _PASSIVE or kind.endswith("_tool_result"):
        return False
    raise FormatError(f"unknown content block type {kind!r} in upstream response")


def block_tool_call(block: Json, index: int, arguments: Any) -> ToolCall:
    """A ToolCall from a tool-use block; MCP calls are named `mcp__<server>__<tool>`."""
    name = block.get("name")
    call_id = block.get("id")
    if not isinstance(name, str):
        name = ""
    if block["type"] == "mcp_tool_use":
        name = f"mcp__{block.get('server_name', '')}__{name}"
    return ToolCall(
        id=call_id if isinstance(call_id, str) else "",
        name=name,
        input=arguments if isinstance(arguments, dict) else None,
        index=index,
    )


def tool_calls(body: Json) -> tuple[ToolCall, ...]:
    """Every tool call in a parsed response, in content order (index = content position)."""
    return tuple(
        block_tool_call(block, i, block.get("input"))
        for i, block in enumerate(body["content"])
        if is_tool_call_block(block["type"])
    )


def apply_verdicts(body: Json, verdicts: Sequence[Verdict]) -> bytes:
    """Redact: each denied call (verdicts align with tool_calls()) becomes a text block.

    When no client tool call is left, stop_reason `tool_use` becomes `end_turn`.
    """
    calls = tool_calls(body)
    if len(calls) != len(verdicts):
        raise ValueError("one verdict per tool call is required")
    content = list(body["content"])
    for call, verdict in zip(calls, verdicts, strict=True):
        if not verdict.allow:
            content[call.index] = {"type": "text", "text": denial_text(call, verdict)}
    new = dict(body)
    new["content"] = content
    if new.get("stop_reason") == "tool_use" and not any(
        isinstance(b, dict) and b.get("type") == "tool_use" for b in content
    ):
        new["stop_reason"] = "end_turn"
    return orjson.dumps(new)


def usage_from(raw_usage: object, base: Usage | None = None) -> Usage:
    """Merge a `usage` object into `base`: fields present replace (Anthropic counts cumulate)."""
    base = base or Usage()
    if not isinstance(raw_usage, dict):
        return base
    return Usage(
        input_tokens=_pick(raw_usage, "input_tokens", base.input_tokens),
        output_tokens=_pick(raw_usage, "output_tokens", base.output_tokens),
        cache_creation_input_tokens=_pick(
            raw_usage, "cache_creation_input_tokens", base.cache_creation_input_tokens
        ),
        cache_read_input_tokens=_pick(
            raw_usage, "cache_read_input_tokens", base.cache_read_input_tokens
        ),
    )


def usage(body: Json) -> Usage:
    """The usage a non-streaming response reports."""
    return usage_from(body.get("usage"))


def _pick(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key)
    return as_int(value) if value is not None else default
