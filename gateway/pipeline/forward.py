"""Stage 6: forward to a provider of the client's own format, and get the response head.

Upstream errors before the first byte keep their status and are re-rendered in the client's
format. Issue 5 replaces _candidates() with routes (priority, weight, model allow-lists,
breaker) and widens the failover loop with per-provider retries; the loop is already here.
"""

from __future__ import annotations

from gateway.errors import ErrorCode, GatewayError
from gateway.pipeline.context import RequestContext, UpstreamAttempt
from gateway.runtime import Runtime
from gateway.upstream.client import (
    ProviderTarget,
    UpstreamConnectError,
    UpstreamError,
    UpstreamReply,
    UpstreamTimeout,
)

__all__ = ["UpstreamRefusal", "forward"]

_ERROR_BODY_MAX = 1024 * 1024
# Reply headers worth passing on with an upstream error (rate-limit hints, request ids).
_ERROR_HEADERS = ("retry-after", "request-id", "x-request-id", "anthropic-ratelimit-")


class UpstreamRefusal(GatewayError):
    """An upstream error answer: its status kept, its body already in the client's format."""

    def __init__(self, status: int, rendered: bytes, headers: dict[str, str], provider: str):
        code: ErrorCode = "rate_limited" if status == 429 else "api_error"
        super().__init__(code, status, f"provider '{provider}' answered HTTP {status}")
        self.rendered = rendered
        self.headers = headers


async def forward(ctx: RequestContext, rt: Runtime) -> UpstreamReply:
    """The reply of the first candidate that answers with a usable head (2xx)."""
    candidates = _candidates(ctx, rt)
    if not candidates:
        raise GatewayError(
            "no_provider_available",
            503,
            f"no provider for the {ctx.client_format} API format is configured",
            rule="providers",
        )
    failure: GatewayError | None = None
    for target in candidates:
        try:
            return await _attempt(ctx, rt, target)
        except GatewayError as exc:  # issue 5: retry only what the route's policy allows
            failure = exc
    assert failure is not None
    raise failure


def _candidates(ctx: RequestContext, rt: Runtime) -> list[ProviderTarget]:
    """For now: the first configured provider that speaks the client's format."""
    assert ctx.wire is not None
    for name, target in rt.targets.items():
        if rt.settings.providers[name].type in ctx.wire.provider_kinds:
            return [target]
    return []


async def _attempt(ctx: RequestContext, rt: Runtime, target: ProviderTarget) -> UpstreamReply:
    assert ctx.wire is not None and ctx.forward_body is not None
    path = ctx.wire.upstream_path(ctx.endpoint)
    if ctx.query:
        path = f"{path}?{ctx.query}"
    ctx.provider = target.name
    try:
        reply = await rt.upstream.send(target, path, ctx.forward_body, ctx.headers)
    except UpstreamError as exc:
        ctx.attempts.append(UpstreamAttempt(target.name, None, exc.code, exc.elapsed_ms))
        raise _failure(exc) from None
    ctx.attempts.append(UpstreamAttempt(target.name, reply.status, None, reply.head_ms))
    if reply.status >= 400:
        raise await _refusal(ctx, reply)
    if reply.is_stream != ctx.stream:
        reply.release()
        kind = "an event stream" if reply.is_stream else f"a {reply.content_type or 'bare'} body"
        raise GatewayError(
            "api_error", 502, f"provider '{target.name}' answered {kind}, which was not asked for"
        )
    return reply


async def _refusal(ctx: RequestContext, reply: UpstreamReply) -> UpstreamRefusal:
    assert ctx.wire is not None
    try:
        raw = await reply.read_body(_ERROR_BODY_MAX)
    except UpstreamError:
        raw = b""  # the status alone still tells the client what happened
    headers = {k: v for k, v in reply.headers.items() if k.startswith(_ERROR_HEADERS)}
    rendered = ctx.wire.rerender_error(reply.status, raw)
    return UpstreamRefusal(reply.status, rendered, headers, reply.provider)


def _failure(exc: UpstreamError) -> GatewayError:
    """A transport failure as a client-facing error; exc.detail never holds the key."""
    if isinstance(exc, UpstreamTimeout):
        return GatewayError(
            "no_provider_available",
            504,
            f"provider '{exc.provider}' did not answer in time ({exc.phase} timeout)",
        )
    if isinstance(exc, UpstreamConnectError):
        return GatewayError(
            "no_provider_available", 503, f"provider '{exc.provider}' is unreachable"
        )
    return GatewayError("api_error", 502, f"provider '{exc.provider}': {exc.detail}")
