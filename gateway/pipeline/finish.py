"""Stage 8: every exit ends here, exactly once: the budget settled with the real usage, the
cost priced, one audit record. Never raises into the response path.

The audit record's tokens are what the budget charged, so counters equal the sum of the
records: input_tokens includes cache creation and cache read tokens (they count against a
budget like any input), and corrections (absent, negative, absurd usage) are in `reasons`.

With `audit.store_bodies` the record also carries the request body as the client sent it and
the response body as the client received it (gateway/pipeline/bodies.py redacts and caps)."""

from __future__ import annotations

import logging
from dataclasses import replace

from gateway.errors import GatewayError
from gateway.formats.canonical import Usage
from gateway.metrics import record_request
from gateway.pipeline.bodies import StreamTap, body_recorder
from gateway.pipeline.budget import settle_budget
from gateway.pipeline.context import RequestContext
from gateway.pipeline.respond import error_body
from gateway.runtime import Runtime
from gateway.settings import AuditSettings
from gateway.state.audit import AuditRecord

__all__ = ["Answer", "audit_record", "finish", "with_bodies"]

# What the client received: a body, the tap of a relayed stream, or None when not kept (the
# error answer of a refusal is rendered again from the refusal).
Answer = bytes | StreamTap | None

log = logging.getLogger("skillwarden.audit")


async def finish(
    ctx: RequestContext, rt: Runtime, refusal: GatewayError | None = None, answer: Answer = None
) -> None:
    """Write the request's one audit record; later calls for the same request do nothing.
    `answer` is what the client received, passed only while audit.store_bodies is on."""
    if ctx.finished:
        return
    ctx.finished = True
    if refusal is not None:
        ctx.status, ctx.error_code = refusal.status, refusal.code
        rule = f" [rule: {refusal.rule}]" if refusal.rule else ""
        ctx.reasons.append(f"{refusal.code}: {refusal.message}{rule}")
    await _settle(ctx, rt)
    ctx.cost_usd = rt.prices.cost(
        ctx.provider, ctx.upstream_model or ctx.model, ctx.input_tokens, ctx.output_tokens
    )
    record_request(rt, ctx)  # labels as the audit record says; never raises
    try:
        record = audit_record(ctx)
        if rt.settings.audit.store_bodies:
            if refusal is not None:
                answer = error_body(ctx, refusal)
            record = with_bodies(record, rt.settings.audit, ctx.raw_body, answer)
        await rt.audit.append(record)
    except Exception:  # the client's answer must not depend on the audit writer
        log.exception("audit record for request %s could not be queued", ctx.request_id)


async def _settle(ctx: RequestContext, rt: Runtime) -> None:
    """Charge what the provider reported (None when it reported nothing) instead of the
    reservation, and record what was charged."""
    if ctx.budget is None:
        return
    usage = None
    if ctx.input_tokens is not None or ctx.output_tokens is not None:
        # The response stages fold cache tokens into input_tokens: the total is unchanged.
        usage = Usage(input_tokens=ctx.input_tokens or 0, output_tokens=ctx.output_tokens or 0)
    try:
        charged = await settle_budget(ctx, rt.counters, ctx.budget, usage)
    except Exception:  # settle_budget handles a down store; anything else is a bug, logged
        log.exception("budget of request %s could not be settled", ctx.request_id)
        return
    ctx.budget = None
    if charged is not None:
        ctx.input_tokens = (
            charged.input_tokens
            + charged.cache_creation_input_tokens
            + charged.cache_read_input_tokens
        )
        ctx.output_tokens = charged.output_tokens


def audit_record(ctx: RequestContext) -> AuditRecord:
    """The record of a finished request (no headers: nothing secret can leak; bodies only
    through with_bodies, when the operator turned them on)."""
    return AuditRecord(
        request_id=ctx.request_id,
        consumer=ctx.consumer,
        skill=ctx.skill,
        skill_version=ctx.skill_version,
        skill_digest=ctx.skill_digest,
        bound_by=ctx.bound_by if ctx.skill is not None else None,
        session_id=ctx.session_id,
        endpoint=ctx.endpoint,
        provider=ctx.provider,
        model=ctx.upstream_model or ctx.model,
        status=ctx.status,
        decision=ctx.decision(),
        reasons=ctx.reasons,
        tools_offered=ctx.tools_offered,
        tools_removed=ctx.tools_removed,
        tool_calls=[v.as_audit() for v in ctx.tool_calls],
        input_tokens=ctx.input_tokens,
        output_tokens=ctx.output_tokens,
        cost_usd=ctx.cost_usd,
        latency_ms=round(ctx.latency_ms, 2),
        upstream_attempts=[a.as_audit() for a in ctx.attempts],
    )


def with_bodies(
    record: AuditRecord, audit: AuditSettings, request: bytes, answer: Answer
) -> AuditRecord:
    """The record with both bodies, redacted and capped (the request and check paths). An
    answer that is None (no body was handed over) leaves the response fields out."""
    recorder = body_recorder(audit)
    sent = recorder.capture(request)
    received = None
    if isinstance(answer, StreamTap):
        received = recorder.capture(answer.captured(), answer.size)
    elif answer is not None:
        received = recorder.capture(answer)
    return replace(
        record,
        request_body=sent.text,
        request_body_truncated=sent.truncated,
        response_body=None if received is None else received.text,
        response_body_truncated=None if received is None else received.truncated,
    )
