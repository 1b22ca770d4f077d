"""The proxy edge: read the request (size-capped), build the RequestContext, run the pipeline.

POST /v1/messages (also ?beta=true), POST /v1/messages/count_tokens and
POST /v1/chat/completions are ProxyEndpoints, read straight from the ASGI scope (no pydantic
models, no middleware: gateway/api/dispatch.py); GET /v1/models is a plain FastAPI route.
"""

from __future__ import annotations

import gc
import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from gateway.errors import GatewayError
from gateway.pipeline.authenticate import authenticate
from gateway.pipeline.context import ClientFormat, RequestContext
from gateway.pipeline.finish import finish
from gateway.pipeline.models import list_models
from gateway.pipeline.run import handle, refuse
from gateway.pipeline.wire import wire_for
from gateway.runtime import Runtime, open_runtime
from gateway.settings import Settings

__all__ = ["BAD_HEAD", "EDGE_ROUTES", "ProxyEndpoint", "install", "runtime_lifespan"]

# Longer header values are refused: nothing an agent sends needs them, and they are
# where oversized or smuggled input hides. Control characters (except tab) likewise.
_MAX_HEADER_VALUE = 4096
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Names must be RFC 9110 tokens (lower-cased here): httptools already insists, but a name
# that is not one could split the header block the forwarder writes upstream.
_NOT_TOKEN = re.compile(r"[^!#$%&'*+\-.^_`|~0-9a-z]")

# The routes gateway/server.py may hand a request whose head it could not parse (a control
# character in a header, conflicting framing headers): no body, this scope extension set,
# so that it is refused here in the client's format and audited like any bad input.
EDGE_ROUTES = frozenset(
    {
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/count_tokens"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    }
)
BAD_HEAD = "skillwarden.bad_head"
_PROXY_ROUTES: dict[str, ClientFormat] = {
    "/v1/messages": "anthropic",
    "/v1/messages/count_tokens": "anthropic",
    "/v1/chat/completions": "openai",
}


class ProxyEndpoint:
    """One proxy route. GatewayApp's fast path calls respond(scope, receive) straight from
    the ASGI scope; FastAPI's router (the fallback, e.g. under a root_path) calls handle()."""

    def __init__(self, endpoint: str, fmt: ClientFormat, limit: int) -> None:
        self.endpoint, self.fmt, self.limit = endpoint, fmt, limit

    async def handle(self, request: Request) -> Response:
        return await self.respond(request.scope, request.receive)

    async def respond(self, scope: Scope, receive: Receive) -> Response:
        """Read the request (size-capped), build the context, run the pipeline."""
        rt: Runtime = scope["app"].state.runtime
        ctx = _context(scope, self.endpoint, self.fmt)
        try:
            _check_head(scope)
            _check_headers(ctx)
            ctx.raw_body = await _read_body(receive, ctx.headers, self.limit)
        except GatewayError as refusal:
            return await refuse(ctx, rt, refusal)
        return await handle(ctx, rt)


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the proxy routes (the runtime comes from runtime_lifespan)."""
    limit = settings.server.max_body_bytes
    for path, fmt in _PROXY_ROUTES.items():
        app.router.add_route(path, ProxyEndpoint(path, fmt, limit).handle, ["POST"])
    app.router.add_route("/v1/models", _models, ["GET"])


@asynccontextmanager
async def runtime_lifespan(app: FastAPI, settings: Settings) -> AsyncIterator[Runtime]:
    """Open the proxy runtime on the stores the app's lifespan opened; close it after."""
    async with open_runtime(settings, app.state.skill_store, app.state.key_store) as rt:
        app.state.runtime = rt
        _freeze_startup_objects()
        yield rt


def _freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, settings, schemas, caches: tens of MB)
    out of the collector's generations. They live as long as the process, yet every full
    collection walked them again: about a fifth of the CPU per request under load, and the
    long pauses behind the p99 (measured with bench/gateway_bench.py)."""
    gc.collect(1)  # the young garbage of start-up is collected, not frozen (a full pass
    gc.freeze()  # costs ~0.1 s per start, which the test suite would pay hundreds of times)


def _context(scope: Scope, endpoint: str, fmt: ClientFormat) -> RequestContext:
    """The context of a request, from the ASGI scope (no Starlette Request: this runs on
    every proxied request, and its lazy Headers/URL objects cost more than this loop)."""
    headers: dict[str, str] = {}
    skill_header: list[str] = []
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
        if name == "x-skill":
            skill_header.append(value)
    return RequestContext(
        request_id=f"req_{random.getrandbits(96):024x}",  # a name, not a secret: no syscall
        endpoint=endpoint,
        client_format=fmt,
        headers=headers,
        raw_body=b"",
        wire=wire_for(fmt),
        query=scope.get("query_string", b"").decode("latin-1"),
        skill_header=tuple(skill_header),
        session_id=headers.get("x-claude-code-session-id", "")[:128] or None,
    )


def _check_head(scope: Scope) -> None:
    extensions = scope.get("extensions")
    if extensions and BAD_HEAD in extensions:
        reason = str(extensions[BAD_HEAD].get("reason", ""))[:200]
        raise GatewayError("invalid_request", 400, f"malformed request head: {reason}")


def _check_headers(ctx: RequestContext) -> None:
    if _NOT_TOKEN.search("".join(ctx.headers)):  # one pass over all the names
        ctx.session_id = None
        raise GatewayError("invalid_request", 400, "a header name is not an HTTP token")
    values = ctx.headers.values()
    if max(map(len, values), default=0) <= _MAX_HEADER_VALUE and not _CONTROL.search(
        "\t".join(values)  # one pass over all values; tab is allowed, so no false alarm
    ):
        return
    for name, value in ctx.headers.items():
        if len(value) > _MAX_HEADER_VALUE or _CONTROL.search(value):
            ctx.session_id = None  # it came from the headers: do not audit a bad value
            raise GatewayError(
                "invalid_request",
                400,
                f"header '{name[:64]}' is too long or holds control characters",
            )


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    too_large = GatewayError(
        "payload_too_large", 413, f"request body exceeds the gateway's limit of {limit} bytes"
    )
    if declared is not None:
        if not declared.isdigit():
            raise GatewayError("invalid_request", 400, "malformed Content-Length header")
        if int(declared) > limit:
            raise too_large
    parts: list[bytes] = []
    size = 0
    while True:  # bounded: the server ends the body with more_body False, or disconnects
        message = await receive()
        if message["type"] == "http.disconnect":
            raise GatewayError("invalid_request", 400, "client disconnected mid-body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large  # stop reading: the rest is never buffered
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


async def _models(request: Request) -> Response:
    """The models the consumer may use, in the format the client speaks."""
    rt: Runtime = request.app.state.runtime
    fmt: ClientFormat = "anthropic" if "anthropic-version" in request.headers else "openai"
    ctx = _context(request.scope, "/v1/models", fmt)
    try:
        _check_head(request.scope)
        _check_headers(ctx)
        await authenticate(ctx, rt)
        body = await list_models(ctx, rt)
    except GatewayError as refusal:
        return await refuse(ctx, rt, refusal)
    ctx.status = 200
    await finish(ctx, rt, None, body if rt.settings.audit.store_bodies else None)
    headers = {"x-skillwarden-request-id": ctx.request_id}
    return Response(body, 200, headers, media_type="application/json")
