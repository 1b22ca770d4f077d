"""Responses the pipeline returns: errors in the client's format, and a stream that always
runs its close hook exactly once (stream ended, broke, or the client went away)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.wire import wire_for

__all__ = ["GuardedStream", "error_body", "error_response", "reply_headers"]

log = logging.getLogger("skillwarden.proxy")
# Provider account identifiers are the operator's business, not the agent's.
_HIDDEN = frozenset({"anthropic-organization-id", "openai-organization", "openai-project"})


def reply_headers(upstream: dict[str, str], ctx: RequestContext) -> dict[str, str]:
    """Upstream reply headers the client sees, plus the gateway's request id."""
    out = {k: v for k, v in upstream.items() if k not in _HIDDEN and k != "content-type"}
    out["x-skillwarden-request-id"] = ctx.request_id
    return out


def error_response(ctx: RequestContext, refusal: GatewayError) -> Response:
    """The refusal in the client's own error shape."""
    body = error_body(ctx, refusal)
    headers = {**refusal.headers, "x-skillwarden-request-id": ctx.request_id}
    return Response(body, refusal.status, headers, media_type="application/json")


def error_body(ctx: RequestContext, refusal: GatewayError) -> bytes:
    """The bytes error_response() answers (upstream errors come pre-rendered); the audit
    record stores them too when bodies are kept."""
    rendered = getattr(refusal, "rendered", None)
    if isinstance(rendered, bytes):
        return rendered
    wire = ctx.wire or wire_for(ctx.client_format)
    return wire.error_body(refusal.code, refusal.status, refusal.message)


class GuardedStream(Response):
    """Streams `chunks`; `on_close` runs once whatever happens. Unlike StreamingResponse, a
    client that disconnects cancels the pump at once, and the generator is always closed."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        on_close: Callable[[str | None], Awaitable[None]],
        headers: dict[str, str],
        status_code: int = 200,
    ) -> None:
        super().__init__(None, status_code, headers, media_type="text/event-stream")
        # Response() frames an empty body with content-length: 0; a stream has no length.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._chunks = chunks
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump = asyncio.ensure_future(self._pump(send))
        watch = asyncio.ensure_future(_disconnected(receive))
        note: str | None = None
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not pump.done():
                note = "client disconnected before the stream ended"
            elif (exc := pump.exception()) is not None:
                note = f"stream failed: {type(exc).__name__}"
                log.error("stream %s failed", getattr(self, "request_id", "?"), exc_info=exc)
        except asyncio.CancelledError:
            note = "request cancelled (server shutting down or client gone)"
            raise
        finally:
            watch.cancel()
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
            aclose = getattr(self._chunks, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(BaseException):
                    await aclose()
            await self._on_close(note)

    async def _pump(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for chunk in self._chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return
