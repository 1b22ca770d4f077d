"""Stage 7: every tool call in the response is checked against the skill, streams included.

Denied calls become a text block naming the rule (mode redact, the stop reason turns into a
normal end of turn when no call is left) or the whole response is refused (mode error).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.formats.canonical import FormatError
from gateway.pipeline.bodies import StreamTap
from gateway.pipeline.context import RequestContext
from gateway.pipeline.respond import GuardedStream, reply_headers
from gateway.pipeline.stream import relay
from gateway.pipeline.verdicts import denied_error, make_decider
from gateway.runtime import Runtime
from gateway.upstream.client import UpstreamError, UpstreamReply, parse_json_body

__all__ = ["enforce_tool_calls"]

_BODY_MAX = 64 * 1024 * 1024
# finish(ctx, rt, refusal, answer): answer is what the client received, or None when the
# operator does not store bodies.
Finish = Callable[
    [RequestContext, Runtime, GatewayError | None, bytes | StreamTap | None], Awaitable[None]
]


async def enforce_tool_calls(
    ctx: RequestContext, rt: Runtime, reply: UpstreamReply, finish: Finish
) -> Response:
    """The client's response; a stream runs `finish` when it closes, a body before returning."""
    headers = reply_headers(reply.headers, ctx)
    keep_bodies = rt.settings.audit.store_bodies
    if reply.is_stream:
        chunks = relay(ctx, reply)
        # Only with store_bodies: a tap keeps the bytes relayed, after the gate's redaction.
        tap = StreamTap() if keep_bodies else None
        if tap is not None:
            chunks = tap.wrap(chunks)

        async def on_close(note: str | None) -> None:
            if note is not None:
                ctx.reasons.append(note)
            reply.release()
            await finish(ctx, rt, None, tap)

        return GuardedStream(chunks, on_close, headers, reply.status)
    body = await _checked_body(ctx, reply)
    ctx.status = reply.status
    await finish(ctx, rt, None, body if keep_bodies else None)
    return Response(body, reply.status, headers, media_type="application/json")


async def _checked_body(ctx: RequestContext, reply: UpstreamReply) -> bytes:
    assert ctx.wire is not None and ctx.resolved is not None
    try:
        raw = await reply.read_body(_BODY_MAX)
        parsed = parse_json_body(reply, raw)  # HTML or malformed JSON: 502
        if ctx.endpoint.endswith("/count_tokens"):
            return raw  # token counts carry no tool call
        body = ctx.wire.check_response(parsed)
    except UpstreamError as exc:
        raise GatewayError("api_error", 502, f"provider '{exc.provider}': {exc.detail}") from None
    except FormatError as exc:
        raise GatewayError(
            "api_error", 502, f"provider '{reply.provider}' answered malformed: {exc.message}"
        ) from None
    usage = ctx.wire.usage(body)
    ctx.input_tokens = usage.input_tokens + usage.cache_read_input_tokens
    ctx.input_tokens += usage.cache_creation_input_tokens
    ctx.output_tokens = usage.output_tokens
    calls = ctx.wire.tool_calls(body)
    if not calls:
        return raw
    decide = make_decider(ctx)
    verdicts = [decide(call) for call in calls]
    if all(v.allow for v in verdicts):
        return raw  # nothing to change: the provider's bytes as they came
    if ctx.resolved.policy.response_mode == "error":
        call, verdict = next((c, v) for c, v in zip(calls, verdicts, strict=True) if not v.allow)
        raise denied_error(ctx, call, verdict)
    return ctx.wire.apply_verdicts(body, verdicts)
