"""GET /v1/models: the models a consumer may use, in the client's own list format.

A provider with a `models` allow-list offers exactly those; one without asks its upstream.
"""

from __future__ import annotations

import orjson

from gateway.pipeline.context import RequestContext, UpstreamAttempt
from gateway.runtime import Runtime
from gateway.upstream.client import UpstreamError, parse_json_body

__all__ = ["list_models"]

_LIST_MAX = 4 * 1024 * 1024


async def list_models(ctx: RequestContext, rt: Runtime) -> bytes:
    """The rendered list (ctx.client_format decides Anthropic's or OpenAI's shape)."""
    assert ctx.wire is not None
    ids: dict[str, str] = {}  # model id -> provider
    for name, conf in rt.settings.providers.items():
        if conf.type not in ctx.wire.provider_kinds:
            continue
        for model in conf.models or await _upstream_ids(ctx, rt, name):
            ids.setdefault(model, name)
    if ctx.client_format == "anthropic":
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "1970-01-01T00:00:00Z"}
            for m in ids
        ]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return orjson.dumps({"data": data, "has_more": False, "first_id": first, "last_id": last})
    rows = [{"id": m, "object": "model", "created": 0, "owned_by": p} for m, p in ids.items()]
    return orjson.dumps({"object": "list", "data": rows})


async def _upstream_ids(ctx: RequestContext, rt: Runtime, name: str) -> list[str]:
    target = rt.targets.get(name)
    if target is None or ctx.wire is None:
        return []
    path = ctx.wire.upstream_path("/v1/models")
    try:
        reply = await rt.upstream.send(target, path, b"", ctx.headers, method="GET")
        ctx.attempts.append(UpstreamAttempt(name, reply.status, None, reply.head_ms))
        raw = await reply.read_body(_LIST_MAX)
        body = parse_json_body(reply, raw) if reply.status == 200 else None
    except UpstreamError as exc:
        ctx.attempts.append(UpstreamAttempt(name, None, exc.code, exc.elapsed_ms))
        return []  # one provider down must not empty the whole list
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return []
    return [d["id"] for d in data if isinstance(d, dict) and isinstance(d.get("id"), str)]
