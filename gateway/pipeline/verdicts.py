"""Verdicts on the model's tool calls: the skill's enforcer behind the formats' decide()."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import orjson

from gateway.errors import GatewayError
from gateway.formats.canonical import ToolCall, Verdict
from gateway.pipeline.context import RequestContext, ToolCallVerdict
from policies.paths import Anchors

__all__ = ["denied_error", "make_decider"]


def make_decider(ctx: RequestContext) -> Callable[[ToolCall], Verdict]:
    """decide(call) for this request's skill; records each verdict on ctx for the audit."""
    resolved = ctx.resolved
    assert resolved is not None
    anchors = Anchors(cwd=ctx.cwd, project_dir=ctx.cwd)
    always = resolved.policy.always_allowed
    denied_by = f"{resolved.ref} allowed-tools"

    def decide(call: ToolCall) -> Verdict:
        if call.input is None:
            verdict = Verdict(False, denied_by, "its arguments are not a complete JSON object")
        elif call.name in always:
            verdict = Verdict(True, "always_allowed", f"{call.name} is always allowed")
        else:
            d = resolved.enforcer.decide(call.name, call.input, anchors)
            verdict = Verdict(d.allow, d.rule or denied_by, d.reason)
        ctx.tool_calls.append(
            ToolCallVerdict(
                call.name,
                _digest(call.input),
                "allow" if verdict.allow else "deny",
                verdict.rule,
                verdict.reason,
            )
        )
        return verdict

    return decide


def denied_error(ctx: RequestContext, call: ToolCall, verdict: Verdict) -> GatewayError:
    """Mode error: the refusal for a denied tool call."""
    return GatewayError(
        "tool_not_allowed",
        403,
        f"skill '{ctx.skill}' may not call {call.name} (rule: {verdict.rule}): {verdict.reason}",
        rule=verdict.rule,
    )


def _digest(value: object) -> str:
    return "sha256:" + hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()
