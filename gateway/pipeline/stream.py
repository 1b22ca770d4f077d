"""Relay an upstream event stream through the format's StreamGate (stage 7, streams).

Text, thinking and pings go out as soon as they arrive; a tool call waits in the gate until
its input is complete. A broken upstream stream ends with the format's own error event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.formats.canonical import FormatError
from gateway.pipeline.context import RequestContext
from gateway.pipeline.verdicts import denied_error, make_decider
from gateway.pipeline.wire import Gate
from gateway.upstream.client import UpstreamError, UpstreamReply
from gateway.upstream.sse import SSEDecoder, SSEError, SSEEvent, encode_events

__all__ = ["relay"]


class _Broken(Exception):
    pass


async def relay(ctx: RequestContext, reply: UpstreamReply) -> AsyncIterator[bytes]:
    """The bytes to send the client; sets ctx.status, usage and failure reasons."""
    wire, resolved = ctx.wire, ctx.resolved
    assert wire is not None and resolved is not None
    gate = wire.gate(make_decider(ctx), resolved.policy.response_mode, ctx.strip_usage)
    decoder = SSEDecoder()
    ended = [not wire.end_event]
    ctx.status = reply.status
    try:
        async for chunk in reply:
            out = _feed(gate, decoder.feed(chunk), wire.end_event, ended)
            if out:
                yield out
            if gate.failure is not None:
                break
        else:
            tail = _feed(gate, decoder.close(), wire.end_event, ended)
            tail += encode_events(gate.close()) if gate.failure is None else b""
            if tail:
                yield tail
            if not ended[0] and gate.failure is None:
                raise _Broken("the upstream stream ended before its last event")
        if gate.failure is not None:
            error = denied_error(ctx, *gate.failure)
            ctx.status, ctx.error_code = error.status, error.code
            ctx.reasons.append(f"{error.code}: {error.message}")
            yield encode_events(wire.stream_error(error.code, error.status, error.message))
    except (UpstreamError, FormatError, SSEError, _Broken) as exc:
        detail = exc.detail if isinstance(exc, UpstreamError) else str(exc)
        message = f"provider '{reply.provider}' stream broke: {detail}"
        ctx.status, ctx.error_code = 502, "api_error"
        ctx.reasons.append(message)
        yield encode_events(wire.stream_error("api_error", 502, message))
    finally:
        usage = gate.usage
        ctx.input_tokens = (
            usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
        )
        ctx.output_tokens = usage.output_tokens


def _feed(gate: Gate, events: list[SSEEvent], end_event: str, ended: list[bool]) -> bytes:
    out: list[SSEEvent] = []
    for ev in events:
        if ev.event in (end_event, "error") and end_event:
            ended[0] = True  # an upstream error event is a proper end too: it is relayed
        out += gate.feed(ev)
        if gate.failure is not None:
            break
    return encode_events(out) if out else b""
