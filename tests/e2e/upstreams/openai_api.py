"""OpenAI Chat Completions bodies and SSE chunk sequences, shaped like openai.types.chat."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from .anthropic_api import split_text
from .replies import Reply, json_reply, sse_event

MODEL = "gpt-4o-mini-2024-07-18"
FINGERPRINT = "fp_scripted01"
DONE = b"data: [DONE]\n\n"
ToolCall = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], str]

ERRORS = {  # status -> (type, code)
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def new_id(prefix: str) -> str:
    sep = "-" if prefix == "chatcmpl" else "_"  # chatcmpl-..., call_...
    return f"{prefix}{sep}{secrets.token_hex(12)}"


def usage(prompt_tokens: int = 42, completion_tokens: int = 17) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _call_id(call: tuple[Any, ...]) -> str:
    return str(call[2]) if len(call) > 2 else new_id("call")


def openai_completion(
    text: str | None = None,
    tool_calls: Iterable[ToolCall] = (),
    *,
    model: str = MODEL,
    finish_reason: str | None = None,
    prompt_tokens: int = 42,
    completion_tokens: int = 17,
) -> dict[str, Any]:
    """A non-streamed ChatCompletion with optional text and function tool calls."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text,
        "refusal": None,
        "annotations": [],
    }
    calls = [
        {
            "id": _call_id(c),
            "type": "function",
            "function": {"name": c[0], "arguments": orjson.dumps(c[1]).decode()},
        }
        for c in tool_calls
    ]
    if calls:
        message["tool_calls"] = calls
    return {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


class _Chunks:
    """Builds chunks sharing id/created/model, with ``usage: null`` when usage is included."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.base = {
            "id": new_id("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": FINGERPRINT,
        }
        self.include_usage = include_usage
        self.events: list[bytes] = []

    def add(self, delta: dict[str, Any], finish_reason: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk: dict[str, Any] = {**self.base, "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        self.events.append(sse_event(chunk))

    def finish(self, reason: str, prompt_tokens: int, completion_tokens: int) -> list[bytes]:
        self.add({}, reason)
        if self.include_usage:
            final = {**self.base, "choices": [], "usage": usage(prompt_tokens, completion_tokens)}
            self.events.append(sse_event(final))
        self.events.append(DONE)
        return self.events


def openai_text_stream(
    text: str,
    *,
    model: str = MODEL,
    split_into: int = 3,
    include_usage: bool = True,
    prompt_tokens: int = 42,
    completion_tokens: int = 17,
) -> list[bytes]:
    """Role chunk, text in N content deltas, finish chunk, usage chunk (optional), [DONE]."""
    c = _Chunks(model, include_usage)
    c.add({"role": "assistant", "content": "", "refusal": None})
    for piece in split_text(text, split_into):
        c.add({"content": piece})
    return c.finish("stop", prompt_tokens, completion_tokens)


def openai_tool_calls_stream(
    calls: Iterable[ToolCall],
    *,
    text: str | None = None,
    model: str = MODEL,
    split_args_into: int = 3,
    interleave: bool = False,
    include_usage: bool = True,
    prompt_tokens: int = 42,
    completion_tokens: int = 17,
) -> list[bytes]:
    """Tool calls as tool_calls[i] deltas: id+name first, then arguments in N pieces.

    ``interleave`` alternates the argument pieces of parallel calls (tracked by index).
    """
    c = _Chunks(model, include_usage)
    c.add({"role": "assistant", "content": text and "", "refusal": None})
    for piece in split_text(text, split_args_into) if text else ():
        c.add({"content": piece})
    calls = list(calls)
    pieces = [split_text(orjson.dumps(call[1]).decode(), split_args_into) for call in calls]
    for i, call in enumerate(calls):
        head = {
            "index": i,
            "id": _call_id(call),
            "type": "function",
            "function": {"name": call[0], "arguments": ""},
        }
        c.add({"tool_calls": [head]})
        if not interleave:
            for p in pieces[i]:
                c.add({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
    if interleave:
        for step in range(max((len(p) for p in pieces), default=0)):
            for i, parts in enumerate(pieces):
                if step < len(parts):
                    c.add({"tool_calls": [{"index": i, "function": {"arguments": parts[step]}}]})
    return c.finish("tool_calls", prompt_tokens, completion_tokens)


def openai_error_body(
    status: int, message: str, type_: str | None = None, code: str | None = None
) -> dict[str, Any]:
    default_type, default_code = ERRORS.get(status, ("server_error", None))
    return {
        "error": {
            "message": message,
            "type": type_ or default_type,
            "param": None,
            "code": code or default_code,
        }
    }


def openai_error(
    status: int,
    message: str = "scripted error",
    *,
    type_: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
) -> Reply:
    """An error answer as the API sends it (x-request-id header, optional retry-after)."""
    headers = {"x-request-id": f"req_{secrets.token_hex(16)}"}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    return json_reply(openai_error_body(status, message, type_, code), status, headers)
