"""Stage 4: tools in the request. The skill's allowed-tools is an allowlist here.

Modes: filter (default) removes the other tools, reject refuses the request, observe changes
nothing. Only `tools`/`tool_choice` (and Anthropic `mcp_servers`) are ever edited; when
nothing is removed the client's bytes go upstream untouched.
"""

from __future__ import annotations

import orjson

from gateway.errors import GatewayError
from gateway.formats.canonical import ToolChoiceEdit
from gateway.pipeline.context import RequestContext
from gateway.runtime import Runtime

__all__ = ["filter_tools"]


def filter_tools(ctx: RequestContext, rt: Runtime) -> None:
    """Set ctx.tools_offered/_removed and ctx.forward_body, or 403 tool_not_allowed."""
    del rt  # the enforcer caches the split per (skill version, offered names)
    view, resolved, wire = ctx.request, ctx.resolved, ctx.wire
    assert view is not None and resolved is not None and wire is not None
    offered = [t.name for t in view.tools]
    policy = resolved.policy
    kept, removed = resolved.enforcer.filter_tools(offered, policy.always_allowed)
    ctx.tools_offered = offered
    forced = view.tool_choice.forced_tool if view.tool_choice is not None else None
    if policy.mode == "observe":
        if removed:
            ctx.reasons.append(f"observe: would remove {', '.join(removed)}")
        _set_body(ctx, None)
        return
    if forced is not None and forced in removed:
        raise GatewayError(
            "tool_not_allowed",
            403,
            f"tool_choice forces '{forced}', which skill '{resolved.ref}' may not use "
            f"(not in its allowed-tools)",
            rule=f"{resolved.ref} allowed-tools",
        )
    if removed and policy.mode == "reject":
        raise GatewayError(
            "tool_not_allowed",
            403,
            f"skill '{resolved.ref}' may not use the offered tools {', '.join(removed)} "
            "(mode reject: remove them from the request)",
            rule=f"{resolved.ref} allowed-tools",
        )
    ctx.tools_removed = removed
    if removed:
        ctx.reasons.append(f"removed tools: {', '.join(removed)}")
    _set_body(ctx, kept if removed else None)


def _set_body(ctx: RequestContext, kept: list[str] | None) -> None:
    """The upstream body: the client's bytes, or one serialisation of the edited body."""
    view, wire = ctx.request, ctx.wire
    assert view is not None and wire is not None
    body = view.body
    if kept is not None:
        body = wire.edit_tools(body, kept, wire.drop_tool_choice(kept) if not kept else _KEEP)
    body, ctx.strip_usage = wire.include_usage(body)
    ctx.forward_body = ctx.raw_body if body is view.body else orjson.dumps(body)


_KEEP = ToolChoiceEdit.KEEP
