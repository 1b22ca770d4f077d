"""OpenAI Chat Completions responses (non-streaming): tool calls out, verdicts in, usage."""

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
    parse_arguments,
)

__all__ = [
    "LEGACY_INDEX",
    "apply_verdicts",
    "make_tool_call",
    "check_response",
    "parse_response",
    "tool_calls",
    "usage",
    "usage_from",
]

LEGACY_INDEX = -1  # ToolCall.index of a legacy `function_call`
_CALL_FINISH = frozenset({"tool_calls", "function_call"})


def parse_response(raw: bytes) -> Json:
    """Parse a chat.completion body and check its choices; FormatError when malformed."""
    return check_response(loads_object(raw, "upstream response"))


def check_response(body: object) -> Json:
    """parse_response() of a body already parsed; FormatError when malformed."""
    if not isinstance(body, dict):
        raise FormatError("upstream response must be a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list):
        raise FormatError("upstream response has no 'choices' list")
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise FormatError(f"upstream choices[{i}] needs a 'message' object")
        calls = choice["message"].get("tool_calls")
        if calls is not None and not (
            isinstance(calls, list) and all(isinstance(c, dict) for c in calls)
        ):
            raise FormatError(f"upstream choices[{i}].message.tool_calls must be a list")
    return body


def make_tool_call(
    kind: object, name: object, arguments: object, call_id: object, index: int, choice: int
) -> ToolCall:
    """A ToolCall; custom tools take free text, seen by policy as {"input": text}."""
    if kind == "custom":
        args: dict[str, Any] | None = {"input": arguments} if isinstance(arguments, str) else None
    elif kind in ("function", None):
        args = parse_arguments(arguments) if isinstance(arguments, str) else None
    else:
        raise FormatError(f"unknown tool call type {kind!r} in upstream response")
    return ToolCall(
        id=call_id if isinstance(call_id, str) else "",
        name=name if isinstance(name, str) else "",
        input=args,
        index=index,
        choice=choice,
    )


def tool_calls(body: Json) -> tuple[ToolCall, ...]:
    """Every tool call of every choice; the legacy function_call has index LEGACY_INDEX."""
    out: list[ToolCall] = []
    for pos, choice in enumerate(body["choices"]):
        number = choice.get("index", pos)
        message = choice["message"]
        for i, call in enumerate(message.get("tool_calls") or []):
            kind = call.get("type")
            inner = call.get(kind if isinstance(kind, str) else "function")
            inner = inner if isinstance(inner, dict) else {}
            arguments = inner.get("input" if kind == "custom" else "arguments")
            out.append(
                make_tool_call(kind, inner.get("name"), arguments, call.get("id"), i, number)
            )
        legacy = message.get("function_call")
        if isinstance(legacy, dict):
            out.append(
                make_tool_call(
                    "function",
                    legacy.get("name"),
                    legacy.get("arguments"),
                    "",
                    LEGACY_INDEX,
                    number,
                )
            )
    return tuple(out)


def apply_verdicts(body: Json, verdicts: Sequence[Verdict]) -> bytes:
    """Redact: denied calls (verdicts align with tool_calls()) leave; their denial text is
    appended to the message content. With no call left, finish_reason becomes `stop`."""
    calls = tool_calls(body)
    if len(calls) != len(verdicts):
        raise ValueError("one verdict per tool call is required")
    denied = {
        (c.choice, c.index): (c, v) for c, v in zip(calls, verdicts, strict=True) if not v.allow
    }
    if not denied:
        return orjson.dumps(body)
    choices = [_redact_choice(pos, ch, denied) for pos, ch in enumerate(body["choices"])]
    return orjson.dumps({**body, "choices": choices})


def _redact_choice(pos: int, choice: Json, denied: dict[tuple[int, int], Any]) -> Json:
    number = choice.get("index", pos)
    message = dict(choice["message"])
    texts: list[str] = []
    kept = []
    for i, call in enumerate(message.get("tool_calls") or []):
        hit = denied.get((number, i))
        if hit is None:
            kept.append(call)
        else:
            texts.append(denial_text(*hit))
    if "tool_calls" in message:
        if kept:
            message["tool_calls"] = kept
        else:
            del message["tool_calls"]
    if (hit := denied.get((number, LEGACY_INDEX))) is not None:
        texts.append(denial_text(*hit))
        del message["function_call"]
    if not texts:
        return choice
    content = message.get("content")
    prefix = f"{content}\n\n" if isinstance(content, str) and content else ""
    message["content"] = prefix + "\n\n".join(texts)
    new = {**choice, "message": message}
    if new.get("finish_reason") in _CALL_FINISH and not kept and "function_call" not in message:
        new["finish_reason"] = "stop"
    return new


def usage_from(raw_usage: object) -> Usage:
    """OpenAI usage in canonical terms: prompt tokens minus cached ones, plus cache reads."""
    if not isinstance(raw_usage, dict):
        return Usage()
    details = raw_usage.get("prompt_tokens_details")
    cached = as_int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    prompt = as_int(raw_usage.get("prompt_tokens"))
    return Usage(
        input_tokens=max(prompt - cached, 0),
        output_tokens=as_int(raw_usage.get("completion_tokens")),
        cache_read_input_tokens=cached,
    )


def usage(body: Json) -> Usage:
    """The usage a non-streaming response reports."""
    return usage_from(body.get("usage"))
