"""The request path, top to bottom, in PRODUCT.md's order (DESIGN.md §2)."""

from __future__ import annotations

import logging
import time

from starlette.responses import Response

from gateway.errors import GatewayError
from gateway.pipeline.authenticate import authenticate
from gateway.pipeline.bind_skill import bind_skill
from gateway.pipeline.budget import budget_headers, reserve_budget
from gateway.pipeline.context import RequestContext
from gateway.pipeline.finish import finish
from gateway.pipeline.forward import forward
from gateway.pipeline.guard import guard_prompt
from gateway.pipeline.parse import parse_body
from gateway.pipeline.respond import error_response
from gateway.pipeline.tool_calls import enforce_tool_calls
from gateway.pipeline.tools import filter_tools
from gateway.runtime import Runtime

__all__ = ["handle", "refuse"]

log = logging.getLogger("skillwarden.proxy")
# Endpoints that generate tokens; count_tokens and models cost nothing and are not budgeted.
_BUDGETED = frozenset({"/v1/messages", "/v1/chat/completions"})


async def handle(ctx: RequestContext, rt: Runtime) -> Response:
    """One proxied request; every exit goes through finish() exactly once."""
    try:
        await authenticate(ctx, rt)  # 401 unauthenticated
        parse_body(ctx, rt.known_tools)  # 400 invalid_request: bad input is never forwarded
        await bind_skill(ctx, rt)  # 403 unknown_skill | skill_not_permitted, 400 bad X-Skill
        guard_prompt(ctx, rt)  # 403 prompt_blocked
        filter_tools(ctx, rt)  # tools the skill may not use leave (403 in reject mode)
        if ctx.endpoint in _BUDGETED:  # 429 budget_exceeded | rate_limited, 503 budget_unavailable
            ctx.budget = await reserve_budget(
                ctx,
                rt.counters,
                rt.settings,
                default_max_tokens=rt.settings.default_max_tokens(ctx.skill),
                fail_open=rt.settings.state.fail_open,
            )
        hold = ctx.budget
        reply = await forward(ctx, rt)  # routes, retries, failover; 503 no_provider_available
        response = await enforce_tool_calls(ctx, rt, reply, finish)  # redact | error, streams too
        if hold is not None:  # x-ratelimit-* as of the reservation, like the providers send
            response.headers.update(budget_headers(hold, time.time()))
        return response
    except GatewayError as refusal:
        return await refuse(ctx, rt, refusal)
    except Exception:
        # Unexpected: answered as api_error 500, after the audit record is written.
        log.exception("request %s failed", ctx.request_id)
        return await refuse(ctx, rt, GatewayError("api_error", 500, "internal gateway error"))


async def refuse(ctx: RequestContext, rt: Runtime, refusal: GatewayError) -> Response:
    """Audit the refusal and answer it in the client's format."""
    await finish(ctx, rt, refusal)
    return error_response(ctx, refusal)
