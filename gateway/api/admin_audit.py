"""GET /admin/audit: the audit log over HTTP, for security reviewers (admin key only).

Query: skill, since (30m, 24h, 7d or an ISO time, as `skillwarden audit --since`), decision
(allow|deny|partial), kind (request|tool_check), limit (1..10000, default 100). Answer:
{"records": [...]}, oldest first, each record the dict `skillwarden audit --format jsonl`
prints. Every bad parameter is listed in one 400 invalid_request.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any, get_args

import typer
from fastapi import APIRouter, Request, Response

from gateway.api.admin import authenticate_admin
from gateway.api.responses import json_response
from gateway.cli_audit import parse_since
from gateway.errors import GatewayError
from gateway.state.audit import AuditStore, Decision, RecordKind, record_to_dict
from skills_registry.manifest import Problem

__all__ = ["KIND_SCAN", "MAX_LIMIT", "router"]

router = APIRouter(prefix="/admin")
MAX_LIMIT = 10_000
# AuditStore.query cannot filter by kind: a kind filter looks at this many of the newest records
# matching the other filters, so the answer stays bounded (docs/metrics.md says so).
KIND_SCAN = 10_000
_PARAMS = ("skill", "since", "decision", "kind", "limit")
_MAX_TEXT = 256
_FLUSH_WAIT_S = 2.0


@router.get("/audit")
async def read_audit(request: Request) -> Response:
    await authenticate_admin(request)
    query = _parse(list(request.query_params.multi_items()))
    store: AuditStore | None = getattr(getattr(request.app.state, "runtime", None), "audit", None)
    if store is None:  # the lifespan has not opened the runtime (or it failed)
        raise GatewayError("api_error", 503, "the gateway is not ready")
    # Records this replica already accepted are visible (read your own writes); a slow writer
    # must not hang the reviewer, though: after a short wait, answer with what is stored.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(store.flush(), _FLUSH_WAIT_S)
    kind, limit = query.pop("kind"), query["limit"]
    if kind is not None:
        query["limit"] = KIND_SCAN
    records = await store.query(**query)
    if kind is not None:
        records = [r for r in records if r.kind == kind][-limit:]
    return json_response({"records": [record_to_dict(r) for r in records]})


def _parse(items: list[tuple[str, str]]) -> dict[str, Any]:
    """The store's query arguments (plus kind), or 400 listing every problem."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for name, value in items:
        if name not in _PARAMS:
            problems.append(Problem(name, f"unknown parameter; use {', '.join(_PARAMS)}", ""))
        elif name in seen:
            problems.append(Problem(name, "given more than once", value[:80]))
        elif len(value) > _MAX_TEXT:
            problems.append(Problem(name, f"longer than {_MAX_TEXT} characters", value[:80]))
        else:
            seen[name] = value
    query: dict[str, Any] = {"skill": seen.get("skill") or None, "limit": 100, "kind": None}
    query["since"] = _since(seen["since"], problems) if seen.get("since") else None
    query["decision"] = _choice(seen, "decision", get_args(Decision), problems)
    query["kind"] = _choice(seen, "kind", get_args(RecordKind), problems)
    if "limit" in seen:
        text = seen["limit"].strip()
        if text.isdigit() and 1 <= int(text) <= MAX_LIMIT:
            query["limit"] = int(text)
        else:
            problems.append(Problem("limit", f"an integer from 1 to {MAX_LIMIT}", seen["limit"]))
    if problems:
        listed = "; ".join(f"{p.field}: {p.rule}" for p in problems)
        raise GatewayError(
            "invalid_request", 400, f"invalid audit query: {listed}", problems=problems
        )
    return query


def _since(text: str, problems: list[Problem]) -> datetime | None:
    try:
        return parse_since(text)
    except (typer.BadParameter, ValueError, OverflowError):  # OverflowError: "99999999999d"
        rule = "a duration (30m, 24h, 7d) or an ISO time (2026-05-01T12:00Z)"
        problems.append(Problem("since", rule, text[:80]))
        return None


def _choice(
    seen: dict[str, str], name: str, allowed: tuple[str, ...], problems: list[Problem]
) -> str | None:
    value = seen.get(name)
    if not value:
        return None
    if value not in allowed:
        problems.append(Problem(name, f"one of {', '.join(allowed)}", value[:80]))
        return None
    return value
