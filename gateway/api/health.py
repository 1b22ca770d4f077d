"""Cheap liveness endpoints: GET /healthz and HEAD / (Claude Code preconnects with HEAD /)."""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

from fastapi import APIRouter, Request, Response

from gateway.api.responses import json_response

__all__ = ["router"]

router = APIRouter()
# /healthz is polled by load balancers; the skill count may be this many seconds old.
_COUNT_TTL_S = 5.0


def _version() -> str:
    try:
        return _dist_version("skillwarden")
    except PackageNotFoundError:
        return "0+unknown"


VERSION = _version()


async def _skill_count(request: Request) -> int:
    state = request.app.state
    cached: tuple[float, int] | None = getattr(state, "skill_count", None)
    now = time.monotonic()
    if cached is None or now - cached[0] > _COUNT_TTL_S:
        cached = (now, len(await state.skill_store.list_latest()))
        state.skill_count = cached
    return cached[1]


@router.api_route("/healthz", methods=["GET", "HEAD"])
async def healthz(request: Request) -> Response:
    if request.method == "HEAD":  # load-balancer probes: no store query at all
        return Response(status_code=200)
    return json_response(
        {"status": "ok", "version": VERSION, "skills": await _skill_count(request)}
    )


@router.api_route("/", methods=["GET", "HEAD"])
async def root(request: Request) -> Response:
    if request.method == "HEAD":
        return Response(status_code=200)
    return json_response({"name": "skillwarden", "version": VERSION})
