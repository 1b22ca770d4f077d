"""POST /v1/tool-calls/check: decide one tool call an agent is about to run (PRODUCT.md).

Body: {"skill"?, "tool", "input"?, "cwd"?, "project_dir"?, "skill_dir"?, "home"?,
"session_id"?, "tool_use_id"?}. Answer: {"decision", "rule", "reason", "skill",
"skill_version", "bound_by"}. The same stages as the proxy authenticate the agent key and bind
the skill: body `skill`, else X-Skill, else the skill the proxy last bound on this consumer's
`session_id` (gateway/state/session_skills.py; the hook sends no skill and follows the
session), else the no_skill policy; entitlement is checked again each time. Every call,
refusals included, writes exactly one audit record of kind "tool_check"; with
audit.store_bodies it carries the check request and the answer, redacted like the proxy's.

Anchors are the caller's claims, as `cwd` is: the gateway cannot see the agent's machine.
project_dir defaults to cwd; home and skill_dir are unknown unless sent, and rules or
paths that need an unknown anchor deny.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import replace
from typing import Any, Literal, cast

import orjson
from fastapi import APIRouter, Request, Response

from gateway.api.admin import read_body_capped
from gateway.api.responses import admin_error_response, json_response
from gateway.errors import GatewayError
from gateway.metrics import record_check
from gateway.pipeline.authenticate import authenticate
from gateway.pipeline.bind_skill import choose_skill, parse_skill_header
from gateway.pipeline.context import RequestContext, ToolCallVerdict
from gateway.pipeline.finish import audit_record, with_bodies
from gateway.pipeline.parse import has_duplicate_keys
from gateway.pipeline.wire import RequestView
from gateway.runtime import ResolvedSkill, Runtime
from policies.enforcer import Decision
from policies.paths import Anchors
from skills_registry.manifest import Problem

__all__ = ["CHECK_PATH", "input_digest", "router"]

log = logging.getLogger("skillwarden.check")
router = APIRouter()
CHECK_PATH = "/v1/tool-calls/check"
_ANCHORS = ("cwd", "project_dir", "skill_dir", "home")
_IDS = ("session_id", "tool_use_id")
_FIELDS = frozenset(("skill", "tool", "input", *_ANCHORS, *_IDS))
_MAX_TEXT = 4096
# How the check chose its skill, beyond what choose_skill reports (header, no_skill_baseline).
_Source = Literal["check_body", "session"] | None


class _NoConversation:
    """The check API has no conversation to follow: choose_skill reads only `.skill`, so the
    skill comes from the body, X-Skill or the session, all passed as the header value."""

    skill = None


def input_digest(tool_input: object) -> str:
    """sha256 of the canonical JSON (sorted keys, orjson) of a tool call's input."""
    canonical = orjson.dumps(tool_input, option=orjson.OPT_SORT_KEYS)
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


@router.post(CHECK_PATH)
async def check_tool_call(request: Request) -> Response:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:  # the lifespan has not opened the runtime (or it failed): nothing to ask
        return admin_error_response(GatewayError("api_error", 503, "the gateway is not ready"))
    headers = dict(request.headers)
    ctx = RequestContext(
        request_id="req_" + secrets.token_hex(12),
        endpoint=CHECK_PATH,
        client_format="anthropic",  # unused here: refusals use the gateway's own error body
        headers=headers,
        raw_body=b"",
        skill_header=tuple(request.headers.getlist("x-skill")),
        session_id=headers.get("x-claude-code-session-id", "")[:128] or None,
    )
    body: dict[str, Any] = {}
    source: _Source = None
    try:
        await authenticate(ctx, rt)
        ctx.raw_body = await read_body_capped(request, rt.settings.server.max_body_bytes)
        body = _parse(ctx.raw_body)
        ctx.session_id = body.get("session_id") or ctx.session_id
        source = _skill_source(ctx, rt, body)
        ctx.request = cast(RequestView, _NoConversation())
        try:
            await choose_skill(ctx, rt)
        except GatewayError as refusal:
            raise _with_session(ctx, refusal) if not ctx.skill_header else refusal from None
        assert ctx.resolved is not None
        decision = _decide(ctx.resolved, body)
    except GatewayError as refusal:
        return await _refuse(rt, ctx, body, source, refusal)
    except Exception:
        log.exception("tool-call check %s failed", ctx.request_id)
        error = GatewayError("api_error", 500, "internal error")
        return await _refuse(rt, ctx, body, source, error)
    ctx.status = 200
    ctx.reasons.append(decision.reason)
    ctx.tool_calls.append(
        ToolCallVerdict(
            body["tool"],
            input_digest(body["input"]) if "input" in body else "",
            "allow" if decision.allow else "deny",
            decision.rule,
            decision.reason,
        )
    )
    response = json_response(
        {
            "decision": "allow" if decision.allow else "deny",
            "rule": decision.rule,
            "reason": decision.reason,
            "skill": ctx.skill,
            "skill_version": ctx.skill_version,
            "bound_by": source or ctx.bound_by,
        }
    )
    await _audit(rt, ctx, body, source, response)
    return response


def _skill_source(ctx: RequestContext, rt: Runtime, body: dict[str, Any]) -> _Source:
    """Put the skill to bind in ctx.skill_header: body `skill` > X-Skill > the session.

    Returns "check_body" or "session" when one of those chose it (None: X-Skill, or nothing,
    and choose_skill then applies the no_skill policy).
    """
    if body.get("skill"):
        ctx.skill_header = (body["skill"],)
        return "check_body"
    if ctx.skill_header or ctx.session_id is None or ctx.consumer is None:
        return None
    # Keyed by the authenticated consumer: another consumer's session is simply unknown.
    known = rt.session_skills.lookup(ctx.consumer, ctx.session_id)
    if known is None:
        return None
    ctx.skill_header = (known.ref,)  # the exact version the proxy enforced; entitlement rechecked
    return "session"


def _with_session(ctx: RequestContext, refusal: GatewayError) -> GatewayError:
    """The no_skill refusal, saying why the session did not give a skill."""
    if ctx.session_id is None:
        why = "the check has no session_id"
    else:
        shown = ctx.session_id[:128].encode("ascii", "backslashreplace").decode()
        why = (
            f"session {shown!r} has no skill bound on this gateway (no request of it offering "
            "tools has passed through this gateway process for this consumer, or it expired)"
        )
    message = f"{refusal.message}; no skill in the check body or X-Skill, and {why}"
    return GatewayError(refusal.code, refusal.status, message, refusal.rule)


async def _refuse(
    rt: Runtime,
    ctx: RequestContext,
    body: dict[str, Any],
    source: _Source,
    refusal: GatewayError,
) -> Response:
    ctx.status = refusal.status
    rule = f" [rule: {refusal.rule}]" if refusal.rule else ""
    ctx.reasons.append(f"{refusal.code}: {refusal.message}{rule}")
    response = admin_error_response(refusal)
    await _audit(rt, ctx, body, source, response)
    return response


def _invalid(message: str, problems: list[Problem] | None = None) -> GatewayError:
    return GatewayError("invalid_request", 400, message, problems=problems or ())


def _parse(raw: bytes) -> dict[str, Any]:
    """The request body, or 400 invalid_request listing every problem."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _invalid("the request body must be a JSON object: {skill, tool, input, cwd}")
    if has_duplicate_keys(raw, body):
        raise _invalid("the request body has duplicate object keys")
    problems = [Problem(k, "unknown field", "") for k in sorted(set(body) - _FIELDS)]
    tool = body.get("tool")
    if not isinstance(tool, str) or not tool:
        problems.append(Problem("tool", "required: the tool name as the agent sent it", ""))
    for name in ("skill", *_IDS, *_ANCHORS):
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > _MAX_TEXT:
            problems.append(Problem(name, f"must be a string of at most {_MAX_TEXT} chars", ""))
        elif name in _ANCHORS and not value.startswith("/"):
            problems.append(Problem(name, "must be an absolute path", value[:200]))
    skill = body.get("skill")
    if isinstance(skill, str) and skill:
        try:
            parse_skill_header([skill])
        except GatewayError:
            problems.append(Problem("skill", "expected <name> or <name>@<version>", skill[:80]))
    if problems:
        listed = "; ".join(f"{p.field}: {p.rule}" for p in problems)
        raise _invalid(f"invalid check request: {listed}", problems)
    return body


def _decide(resolved: ResolvedSkill, body: dict[str, Any]) -> Decision:
    """Same semantics as the proxy's response check (pipeline/tool_calls.py make_decider)."""
    tool: str = body["tool"]
    denied_by = f"{resolved.ref} allowed-tools"
    if "input" not in body:
        return Decision(False, denied_by, f"the {tool} call has no input, so it cannot be checked")
    if tool in resolved.policy.always_allowed:
        return Decision(True, "always_allowed", f"{tool} is always allowed")
    cwd = body.get("cwd")
    anchors = Anchors(
        cwd=cwd,
        project_dir=body.get("project_dir") or cwd,
        home=body.get("home"),
        skill_dir=body.get("skill_dir"),
    )
    decision = resolved.enforcer.decide(tool, body["input"], anchors)
    return Decision(decision.allow, decision.rule or denied_by, decision.reason)


async def _audit(
    rt: Runtime, ctx: RequestContext, body: dict[str, Any], source: _Source, response: Response
) -> None:
    """The check's one record: the proxy's record builder, marked as a tool_check (with the
    request and the answer when the operator stores bodies)."""
    allowed = ctx.status == 200 and all(v.decision == "allow" for v in ctx.tool_calls)
    record = replace(
        audit_record(ctx),
        kind="tool_check",
        decision="allow" if allowed else "deny",
        bound_by=(source or ctx.bound_by) if ctx.skill else None,
    )
    tool_use_id = body.get("tool_use_id")
    if tool_use_id and record.tool_calls:  # joins the hook's check with the proxy's record
        calls = [{**call, "tool_use_id": tool_use_id} for call in record.tool_calls]
        record = replace(record, tool_calls=calls)
    if rt.settings.audit.store_bodies:
        record = with_bodies(record, rt.settings.audit, ctx.raw_body, bytes(response.body))
    record_check(rt, ctx, record.decision)  # source="check"; never raises
    try:
        await rt.audit.append(record)
    except Exception:  # as in pipeline/finish.py: the answer must not depend on the writer
        log.exception("audit record for tool-call check %s could not be queued", ctx.request_id)
