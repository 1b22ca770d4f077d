"""GET /ui/ and GET /ui/skills/{name}: the read-only review page (PRODUCT.md, reviewers).

Server-rendered HTML (gateway/ui_render.py), no JavaScript, no forms. Admin key only: a browser
sends it as the HTTP Basic password (any user name); scripts may use x-api-key or Bearer like
the admin API. Every answer, errors included, carries a strict CSP and no-store.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request, Response

from gateway.api.admin import api_key_from_headers
from gateway.pipeline.budget import skill_scope_limits
from gateway.runtime import Runtime
from gateway.skill_views import skill_detail_view, skill_summary_view
from gateway.state.audit import AuditRecord, AuditStore
from gateway.state.counters import Counters, CountersUnavailable
from gateway.ui_render import Budget, Denial, SkillRow, denials_of, error_page, index_page
from gateway.ui_render import skill_page as render_skill_page
from gateway.upstream.breaker import BreakerSnapshot
from skills_registry.store import SkillStore
from skills_registry.validate import NAME_PATTERN

__all__ = ["SECURITY_HEADERS", "router"]

router = APIRouter(prefix="/ui")
SECURITY_HEADERS = {
    # No script, frame, image or form is ever allowed; the one inline <style> is.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
_REALM = 'Basic realm="skillwarden", charset="UTF-8"'
_MAX_NAME = 64  # the Agent Skills name limit (skills_registry/schema)
_RECENT = 50
# The 24 h denial count reads at most this many deny and partial records (then shows "N+").
_SCAN = 5_000
_FLUSH_WAIT_S = 2.0  # as GET /admin/audit: read our own writes, but never hang on a slow writer


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _html(text: str, status: int = 200, extra: dict[str, str] | None = None) -> Response:
    headers = {**SECURITY_HEADERS, **(extra or {})}
    return Response(text, status, headers, media_type="text/html; charset=utf-8")


def _refusal(exc: _Refused) -> Response:
    extra = {"WWW-Authenticate": _REALM} if exc.status == 401 else None
    return _html(error_page(exc.status, exc.message), exc.status, extra)


def _basic_password(request: Request) -> str | None:
    """The key from `Authorization: Basic base64(user:key)` (a bare `key:` works too)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return (password or user).strip() or None


async def _authenticate(request: Request) -> None:
    """As authenticate_admin, but a browser's Basic credentials count, and refusals are HTML."""
    plaintext = api_key_from_headers(request) or _basic_password(request)
    if plaintext is None:
        raise _Refused(401, "Sign in with an admin API key as the password (any user name).")
    key = await request.app.state.key_store.verify(plaintext)
    if key is None:
        raise _Refused(401, "Invalid API key.")
    if key.kind != "admin":
        raise _Refused(403, "This page needs an admin key, not an agent key.")


def _runtime(request: Request) -> Runtime:
    rt: Runtime | None = getattr(request.app.state, "runtime", None)
    if rt is None:  # the lifespan has not opened the runtime (or it failed)
        raise _Refused(503, "The gateway is not ready.")
    return rt


async def _budgets(rt: Runtime, skill: str) -> list[Budget]:
    counters: Counters = rt.counters
    found = []
    for limit in skill_scope_limits(rt.settings, skill):
        try:
            usage = await counters.usage(limit)
        except CountersUnavailable:
            usage = None  # shown as unavailable; the page itself still renders
        found.append(Budget(limit.window, limit.kind, limit.limit, usage))
    return found


def _breakers(rt: Runtime) -> list[BreakerSnapshot]:
    """Every configured provider (closed until it has seen traffic), as /metrics lists them."""
    seen = rt.breakers.snapshot()
    names = dict.fromkeys([*rt.settings.providers, *seen])
    return [seen.get(n) or BreakerSnapshot(n, "closed", 0, 0.0, 0) for n in names]


async def _denial_records(
    store: AuditStore, skill: str | None, since: datetime | None, deny_limit: int
) -> tuple[list[AuditRecord], bool]:
    """deny and partial records (the store filters one decision at a time); capped or not.

    Partial records are scanned further: most only removed offered tools (not denials)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(store.flush(), _FLUSH_WAIT_S)
    deny = await store.query(skill=skill, since=since, decision="deny", limit=deny_limit)
    partial = await store.query(skill=skill, since=since, decision="partial", limit=_SCAN)
    return deny + partial, len(deny) >= deny_limit or len(partial) >= _SCAN


@router.get("", include_in_schema=False)
async def ui_root_redirect() -> Response:
    # Relative, so /prefix/ui -> /prefix/ui/ behind a path-prefix proxy as well.
    return Response(status_code=308, headers={**SECURITY_HEADERS, "Location": "ui/"})


@router.get("/")
async def ui_index(request: Request) -> Response:
    try:
        await _authenticate(request)
        rt = _runtime(request)
    except _Refused as exc:
        return _refusal(exc)
    now = datetime.now(UTC)
    store: SkillStore = request.app.state.skill_store
    records, capped = await _denial_records(rt.audit, None, now - timedelta(hours=24), _SCAN)
    per_skill: dict[str | None, int] = {}
    for record in records:
        count = len(denials_of([record]))
        if count:
            per_skill[record.skill] = per_skill.get(record.skill, 0) + count
    latest = await store.list_latest()
    rows = [
        SkillRow(
            skill_summary_view(v), await _budgets(rt, v.name), per_skill.pop(v.name, 0), capped
        )
        for v in latest
    ]
    # What is left: no skill, or a name the client sent that is not in the registry.
    page = index_page(rows, _breakers(rt), now=now, unbound_denials=sum(per_skill.values()))
    return _html(page)


@router.get("/skills/{name}")
async def ui_skill(request: Request, name: str) -> Response:
    try:
        await _authenticate(request)
        rt = _runtime(request)
        # Registry grammar only: anything else is not a skill, and is never echoed back.
        if len(name) > _MAX_NAME or not NAME_PATTERN.fullmatch(name):
            raise _Refused(404, "No such skill.")
        store: SkillStore = request.app.state.skill_store
        latest = await store.get_version(name, None)
        if latest is None:
            raise _Refused(404, "No such skill in the registry.")
    except _Refused as exc:
        return _refusal(exc)
    records, _ = await _denial_records(rt.audit, name, None, _RECENT)
    denials: list[Denial] = denials_of(records)[:_RECENT]
    detail = skill_detail_view(latest, await store.list_versions(name))
    page = render_skill_page(detail, await _budgets(rt, name), denials, now=datetime.now(UTC))
    return _html(page)
