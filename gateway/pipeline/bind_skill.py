"""Stage 2: which skill is active, and may this consumer use it (PRODUCT.md step 2).

Order: the latest `Skill` tool call since the last human turn (Claude Code's custom headers are
fixed for a session, so only the conversation follows a skill switch), else `X-Skill`, else
the operator's `no_skill` policy (deny, or a baseline skill).

The binding of a Claude Code session's latest request that offers tools is remembered per
(consumer, session id) in rt.session_skills, so that POST /v1/tool-calls/check (the
PreToolUse hook) can follow the skill the model switched to. Requests without tools (the
session-title and WebFetch side requests) cannot lead to a tool call and change nothing.
"""

from __future__ import annotations

import re

from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.runtime import ResolvedSkill, Runtime

__all__ = ["bind_skill", "choose_skill", "parse_skill_header"]

# Agent Skills names: lowercase letters, digits and single hyphens, at most 64 characters.
_NAME = r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){0,63}"
_HEADER = re.compile(rf"({_NAME})(?:@([A-Za-z0-9][A-Za-z0-9._+-]{{0,63}}))?")


def parse_skill_header(values: list[str]) -> tuple[str, str | None] | None:
    """X-Skill as (name, version|None); None when absent; 400 when repeated or malformed."""
    if not values:
        return None
    if len(values) > 1 or "," in values[0]:
        raise GatewayError(
            "invalid_request", 400, "X-Skill must be sent once, with one skill", rule="X-Skill"
        )
    m = _HEADER.fullmatch(values[0].strip())
    if m is None:
        shown = values[0][:80].encode("ascii", "backslashreplace").decode()
        raise GatewayError(
            "invalid_request",
            400,
            f"malformed X-Skill header {shown!r}: expected <name> or <name>@<version>",
            rule="X-Skill",
        )
    return m.group(1), m.group(2)


async def bind_skill(ctx: RequestContext, rt: Runtime) -> None:
    """The proxy's stage: choose_skill, and remember the outcome for the session."""
    session = _session_key(ctx)
    try:
        await choose_skill(ctx, rt)
    except GatewayError:
        if session is not None:  # fail closed: the check must not keep a binding now refused
            rt.session_skills.forget(*session)
        raise
    if session is not None and ctx.resolved is not None:
        rt.session_skills.record(*session, ctx.resolved.ref, ctx.bound_by)


def _session_key(ctx: RequestContext) -> tuple[str, str] | None:
    """(consumer, session id) when this request's binding is the session's to remember."""
    if ctx.session_id is None or ctx.consumer is None:
        return None
    if ctx.request is None or not ctx.request.tools:
        return None  # no tools offered: no tool call can follow from this request
    return ctx.consumer, ctx.session_id


async def choose_skill(ctx: RequestContext, rt: Runtime) -> None:
    """Set ctx.resolved, ctx.skill/_version/_digest and ctx.bound_by, or refuse (400/403)."""
    assert ctx.request is not None
    header = parse_skill_header(list(ctx.skill_header))
    invocation = ctx.request.skill
    if invocation is not None:
        name = invocation.skill
        # A pin in the header still applies when the conversation names the same skill.
        version = header[1] if header is not None and header[0] == name else None
        ctx.bound_by = "skill_tool_call"
    elif header is not None:
        name, version = header
        ctx.bound_by = "header"
    else:
        name, version = _no_skill(rt)
        ctx.bound_by = "no_skill_baseline"
    ctx.skill = name
    resolved = await rt.skills.resolve(name, version)
    if resolved is None:
        what = f"{name}@{version}" if version else name
        raise GatewayError(
            "unknown_skill",
            403,
            f"unknown skill '{what}' (bound by {ctx.bound_by}): no such skill is published",
            rule=f"skill:{what}",
        )
    _record(ctx, resolved)
    allowed = ctx.consumer_skills
    if allowed is not None and name not in allowed and "*" not in allowed:
        raise GatewayError(
            "skill_not_permitted",
            403,
            f"consumer '{ctx.consumer}' is not permitted to use skill '{name}'",
            rule=f"consumers.{ctx.consumer}.skills",
        )


def _no_skill(rt: Runtime) -> tuple[str, str | None]:
    baseline = rt.star.no_skill
    if baseline is None or baseline == "deny":
        raise GatewayError(
            "unknown_skill",
            403,
            "no skill is active: send the X-Skill header (<name> or <name>@<version>); "
            "requests without a skill are denied by the no_skill policy",
            rule="skills.*.no_skill: deny",
        )
    header = parse_skill_header([baseline])
    assert header is not None
    return header


def _record(ctx: RequestContext, resolved: ResolvedSkill) -> None:
    ctx.resolved = resolved
    ctx.skill_version = resolved.version.version
    ctx.skill_digest = resolved.version.digest
