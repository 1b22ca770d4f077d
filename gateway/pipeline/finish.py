"""Stage 8: every exit ends here, exactly once: one audit record (and, with issue 5, the
budget settled with the real usage). Never raises into the response path."""

from __future__ import annotations

import logging

from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.runtime import Runtime
from gateway.state.audit import AuditRecord

__all__ = ["audit_record", "finish"]

log = logging.getLogger("skillwarden.audit")


async def finish(ctx: RequestContext, rt: Runtime, refusal: GatewayError | None = None) -> None:
    """Write the request's one audit record; later calls for the same request do nothing."""
    if ctx.finished:
        return
    ctx.finished = True
    if refusal is not None:
        ctx.status, ctx.error_code = refusal.status, refusal.code
        rule = f" [rule: {refusal.rule}]" if refusal.rule else ""
        ctx.reasons.append(f"{refusal.code}: {refusal.message}{rule}")
    # issue 5: settle ctx.budget with ctx.input_tokens / ctx.output_tokens here.
    try:
        await rt.audit.append(audit_record(ctx))
    except Exception:  # the client's answer must not depend on the audit writer
        log.exception("audit record for request %s could not be queued", ctx.request_id)


def audit_record(ctx: RequestContext) -> AuditRecord:
    """The record of a finished request (no headers or bodies: nothing secret can leak)."""
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
        model=ctx.model,
        status=ctx.status,
        decision=ctx.decision(),
        reasons=ctx.reasons,
        tools_offered=ctx.tools_offered,
        tools_removed=ctx.tools_removed,
        tool_calls=[v.as_audit() for v in ctx.tool_calls],
        input_tokens=ctx.input_tokens,
        output_tokens=ctx.output_tokens,
        latency_ms=round(ctx.latency_ms, 2),
        upstream_attempts=[a.as_audit() for a in ctx.attempts],
    )
