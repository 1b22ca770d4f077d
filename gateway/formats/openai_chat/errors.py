"""Errors in the OpenAI shape, so the openai SDK raises its usual classes.

Takes (code, status, message) as plain values: this layer does not import gateway.errors.
"""

from __future__ import annotations

import orjson

from gateway.upstream.sse import SSEEvent

__all__ = ["error_body", "error_type", "rerender_upstream_error", "stream_error_events"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type(status: int) -> str:
    """The OpenAI error type for an HTTP status (the SDK picks its class by status)."""
    found = _TYPES.get(status)
    if found is not None:
        return found
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(code: str, status: int, message: str) -> bytes:
    """`{"error":{"message","type","code","param":null}}` with the Skillwarden code."""
    return orjson.dumps(
        {"error": {"message": message, "type": error_type(status), "code": code, "param": None}}
    )


def stream_error_events(code: str, status: int, message: str) -> list[SSEEvent]:
    """A data chunk holding an error object (the SDK raises APIError on it), then [DONE]."""
    return [SSEEvent(error_body(code, status, message).decode()), SSEEvent("[DONE]")]


def rerender_upstream_error(status: int, raw: bytes) -> bytes:
    """An upstream error body (OpenAI, Anthropic, other JSON or not JSON) in OpenAI shape."""
    error: dict[str, object] = {
        "message": f"upstream provider returned HTTP {status}",
        "type": error_type(status),
        "code": None,
        "param": None,
    }
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None  # HTML or text: never echo unknown upstream markup to the client
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):  # OpenAI and Anthropic both nest it under "error"
            for key in ("message", "type", "code", "param"):
                if isinstance(inner.get(key), str):
                    error[key] = inner[key]
        else:
            for key in ("message", "detail", "error"):
                if isinstance(value := body.get(key), str):
                    error["message"] = value
                    break
    return orjson.dumps({"error": error})
