"""Errors in the Anthropic Messages shape, so the anthropic SDK raises its usual classes.

Takes (code, status, message) as plain values: this layer does not import gateway.errors.
"""

from __future__ import annotations

import orjson

from gateway.upstream.sse import SSEEvent

__all__ = ["error_body", "error_type", "rerender_upstream_error", "stream_error_event"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_KNOWN_TYPES = frozenset(_TYPES.values()) | {"api_error"}


def error_type(status: int) -> str:
    """The Anthropic error type for an HTTP status (the SDK picks its class by status)."""
    found = _TYPES.get(status)
    if found is not None:
        return found
    return "api_error" if status >= 500 else "invalid_request_error"


def error_body(code: str, status: int, message: str, request_id: str | None = None) -> bytes:
    """`{"type":"error","error":{"type","message"},"request_id"?}`; `code` is kept for audit."""
    del code  # the Anthropic shape has no code field; the message names the skill and rule
    body: dict[str, object] = {
        "type": "error",
        "error": {"type": error_type(status), "message": message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return orjson.dumps(body)


def stream_error_event(code: str, status: int, message: str) -> SSEEvent:
    """The `event: error` that ends a stream mid-way (the SDK raises an APIStatusError on it)."""
    return SSEEvent(error_body(code, status, message).decode(), "error")


def rerender_upstream_error(status: int, raw: bytes) -> bytes:
    """An upstream error body (Anthropic, OpenAI, other JSON or not JSON) in Anthropic shape."""
    err_type, message = _upstream_message(raw)
    if err_type not in _KNOWN_TYPES:
        err_type = error_type(status)
    if not message:
        message = f"upstream provider returned HTTP {status}"
    return orjson.dumps({"type": "error", "error": {"type": err_type, "message": message}})


def _upstream_message(raw: bytes) -> tuple[str | None, str | None]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None  # HTML or text: never echo unknown upstream markup to the client
    if not isinstance(body, dict):
        return None, None
    err = body.get("error")
    if isinstance(err, dict):  # Anthropic and OpenAI both nest {type, message} under "error"
        kind, message = err.get("type"), err.get("message")
        return (
            kind if isinstance(kind, str) else None,
            message if isinstance(message, str) else None,
        )
    for key in ("message", "detail", "error"):
        if isinstance(value := body.get(key), str):
            return None, value
    return None, None
