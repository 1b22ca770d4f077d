"""Stage 6: route, retry, fail over, and get the response head of one provider.

Routes, retries, Retry-After, breakers: gateway/upstream/{router,failover,breaker}.py. A reply
returned here is committed (DESIGN.md §4): nothing after its first byte is ever retried.
Upstream errors keep their status and are re-rendered in the client's format.

The budget was reserved once, before this stage; the attempts below share that reservation.
When no reply is committed (every provider failed, or the committed one is an error), the
reservation is released here: no provider generated anything for this request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.errors import ErrorCode, GatewayError
from gateway.pipeline.budget import release_budget
from gateway.pipeline.context import RequestContext
from gateway.runtime import Runtime
from gateway.upstream.client import ProviderTarget, UpstreamError, UpstreamReply
from gateway.upstream.failover import NoProviderAvailable, send_with_failover

__all__ = ["UpstreamRefusal", "cap_field", "forward"]

_ERROR_BODY_MAX = 1024 * 1024
# Reply headers worth passing on with an upstream error (rate-limit hints, request ids).
_ERROR_HEADERS = ("retry-after", "request-id", "x-request-id", "anthropic-ratelimit-")
_OPENAI_CAPS = ("max_completion_tokens", "max_tokens")


class UpstreamRefusal(GatewayError):
    """An upstream error answer: its status kept, its body already in the client's format."""

    def __init__(self, status: int, rendered: bytes, headers: dict[str, str], provider: str):
        code: ErrorCode = "rate_limited" if status == 429 else "api_error"
        super().__init__(code, status, f"provider '{provider}' answered HTTP {status}")
        self.rendered = rendered
        self.headers = headers


async def forward(ctx: RequestContext, rt: Runtime) -> UpstreamReply:
    """The committed 2xx reply of the first provider in the route plan that answers."""
    try:
        return await _forward(ctx, rt)
    except BaseException:
        await release_budget(ctx, rt.counters, ctx.budget)
        ctx.budget = None  # nothing left for finish to settle
        raise


async def _forward(ctx: RequestContext, rt: Runtime) -> UpstreamReply:
    assert ctx.wire is not None
    wire = ctx.wire
    # 403 invalid_request (rule <routes>.models) | 503 no_provider_available
    plan = rt.router.plan(ctx.skill, ctx.client_format, ctx.model)
    path = wire.upstream_path(ctx.endpoint)
    if ctx.query:
        path = f"{path}?{ctx.query}"
    bodies: dict[tuple[str | None, str | None], bytes] = {}

    async def send_one(target: ProviderTarget, model: str | None) -> UpstreamReply:
        ctx.provider, ctx.target, ctx.upstream_model = target.name, target, model or ctx.model
        key = (model if model != ctx.model else None, cap_field(ctx, rt, target.name))
        body = bodies.get(key)
        if body is None:
            body = bodies[key] = _attempt_body(ctx, *key)
        return await rt.upstream.send(target, path, body, ctx.headers)

    try:
        reply, _ = await send_with_failover(
            plan, send_one, breakers=rt.breakers, attempts=ctx.attempts, rng=rt.router.rng
        )
    except NoProviderAvailable as exc:
        up = exc.upstream
        if up is None:
            raise  # 503 no_provider_available (+ Retry-After when every circuit is open)
        ctx.provider = up.provider
        rendered = wire.rerender_error(up.status, up.body)
        raise UpstreamRefusal(up.status, rendered, _passed(up.headers), up.provider) from None
    ctx.provider = reply.provider
    if reply.status >= 400:  # committed 4xx (400, 401, 403, 404, 413, 422...): not retried
        raise await _refusal(ctx, reply)
    if reply.is_stream != ctx.stream:
        reply.release()
        kind = "an event stream" if reply.is_stream else f"a {reply.content_type or 'bare'} body"
        asked = f"provider '{reply.provider}' answered {kind}, which was not asked for"
        raise GatewayError("api_error", 502, asked)
    if ctx.upstream_model != ctx.model:
        ctx.reasons.append(f"model alias: {ctx.model} -> {ctx.upstream_model}")
    return reply


def cap_field(ctx: RequestContext, rt: Runtime, provider: str) -> str | None:
    """The output-cap field to add for this provider, or None (the client sent one, or the
    request is not an OpenAI chat request the budget capped by default).

    The budget reserved settings.default_max_tokens for such a request; the provider must not
    produce more. OpenAI itself takes max_completion_tokens (its reasoning models refuse
    max_tokens); OpenAI-compatible servers (vLLM, Ollama, llama.cpp) all take max_tokens."""
    hold = ctx.budget
    if hold is None or not hold.defaulted_output or ctx.client_format != "openai":
        return None
    conf = rt.settings.providers.get(provider)
    return "max_completion_tokens" if conf is not None and conf.type == "openai" else "max_tokens"


def _attempt_body(ctx: RequestContext, model: str | None, cap: str | None) -> bytes:
    """ctx.forward_body with the attempt's upstream model (an alias) and output cap."""
    assert ctx.forward_body is not None
    body = ctx.forward_body
    if model is None and cap is None:
        return body  # the common case: the bytes as the earlier stages left them
    present = ctx.body is not None and any(k in ctx.body for k in _OPENAI_CAPS)
    if model is None and cap is not None and not present and body[:1] == b"{":
        # Surgical: one new key in front, every other byte as it was.
        assert ctx.budget is not None
        head = b'{"' + cap.encode() + b'":' + str(ctx.budget.max_output).encode()
        return head + (b"," + body[1:] if body[1:].lstrip()[:1] != b"}" else body[1:])
    edited: dict[str, Any] = orjson.loads(body)
    if model is not None:
        edited["model"] = model
    if cap is not None:
        assert ctx.budget is not None
        for key in _OPENAI_CAPS:  # a null cap the client sent is replaced, never duplicated
            edited.pop(key, None)
        edited[cap] = ctx.budget.max_output
    return orjson.dumps(edited)


def _passed(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith(_ERROR_HEADERS)}


async def _refusal(ctx: RequestContext, reply: UpstreamReply) -> UpstreamRefusal:
    assert ctx.wire is not None
    try:
        raw = await reply.read_body(_ERROR_BODY_MAX)
    except UpstreamError:
        raw = b""  # the status alone still tells the client what happened
    rendered = ctx.wire.rerender_error(reply.status, raw)
    return UpstreamRefusal(reply.status, rendered, _passed(reply.headers), reply.provider)
