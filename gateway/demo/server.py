"""The demo provider: the scripted model served over real HTTP on an ephemeral loopback port.

The gateway keeps its real forward path: a provider of type ``demo`` becomes, for the lifetime
of the runtime, an ``anthropic`` provider at this server, and a companion ``<name>-openai``
provider (type ``openai``) is added right after it, in ``providers`` and next to every route
that names it, so both client formats reach the scripted model. The server checks a per-run
random key, so only this gateway process can call it.
"""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web
from pydantic import SecretStr

from gateway.demo import model
from gateway.settings import ProviderSettings, RouteTarget, Settings

__all__ = [
    "DemoServer",
    "demo_provider_names",
    "demo_upstream",
    "models_list",
    "with_demo_providers",
]

log = logging.getLogger("skillwarden.demo")
OPENAI_SUFFIX = "-openai"
_BODY_MAX = 16 * 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(fmt: str, status: int, message: str) -> web.Response:
    if fmt == "anthropic":
        kind = "authentication_error" if status == 401 else "invalid_request_error"
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


class DemoServer:
    """aiohttp.web app on 127.0.0.1:<ephemeral>: /v1/messages[/count_tokens], /v1/models
    (Anthropic) and /openai/v1/chat/completions, /openai/v1/models (OpenAI)."""

    def __init__(self) -> None:
        self.key = "sk-demo-" + secrets.token_urlsafe(24)
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/openai/v1"

    async def start(self) -> None:
        app = web.Application(client_max_size=_BODY_MAX)
        app.router.add_post("/v1/messages", self._guard("anthropic", self._messages))
        app.router.add_post("/v1/messages/count_tokens", self._guard("anthropic", self._count))
        app.router.add_get("/v1/models", self._guard("anthropic", _models("anthropic")))
        app.router.add_post("/openai/v1/chat/completions", self._guard("openai", self._chat))
        app.router.add_get("/openai/v1/models", self._guard("openai", _models("openai")))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # loopback only: nothing outside this host reaches it
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _guard(self, fmt: str, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            if fmt == "anthropic":
                given = request.headers.get("x-api-key", "")
            else:
                given = request.headers.get("authorization", "").removeprefix("Bearer ")
            if not secrets.compare_digest(given.encode(), self.key.encode()):
                return _error(fmt, 401, "demo provider: wrong key (only its gateway may call it)")
            return await handler(request)

        return checked

    async def _body(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None
        return body if isinstance(body, dict) else None

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if body is None:
            return _error("anthropic", 400, "body must be a JSON object")
        if body.get("stream") is True:
            return await _stream(request, model.anthropic_events(body))
        return _json(model.anthropic_message(body))

    async def _count(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if body is None:
            return _error("anthropic", 400, "body must be a JSON object")
        return _json(model.anthropic_count_tokens(body))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if body is None:
            return _error("openai", 400, "body must be a JSON object")
        created = int(time.time())
        if body.get("stream") is True:
            return await _stream(request, model.openai_chunks(body, created))
        return _json(model.openai_completion(body, created))


def _models(fmt: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _json(models_list(fmt))

    return handler


def _json(data: Mapping[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


async def _stream(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
    )
    await resp.prepare(request)
    for event in events:
        await resp.write(event)
    await resp.write_eof()
    return resp


def models_list(fmt: str) -> dict[str, Any]:
    """GET /v1/models in the given format: the one demo model."""
    if fmt == "anthropic":
        row = {
            "type": "model",
            "id": model.MODEL,
            "display_name": "Skillwarden demo (scripted)",
            "created_at": "2025-01-01T00:00:00Z",
        }
        return {"data": [row], "has_more": False, "first_id": model.MODEL, "last_id": model.MODEL}
    oai: dict[str, Any] = {
        "id": model.MODEL,
        "object": "model",
        "created": 0,
        "owned_by": "skillwarden",
    }
    return {"object": "list", "data": [oai]}


# -- settings --------------------------------------------------------------------------------


def demo_provider_names(settings: Settings) -> list[str]:
    """Providers of type demo, plus "demo" when a route names it without defining it
    (settings accept that name as the built-in provider)."""
    names = [n for n, p in settings.providers.items() if p.type == "demo"]
    routes = list(settings.routes)
    for policy in settings.skills.values():
        routes += policy.routes or []
    if "demo" not in settings.providers and any(r.provider == "demo" for r in routes):
        names.append("demo")
    return names


def with_demo_providers(settings: Settings, server: DemoServer) -> Settings:
    """settings with each demo provider pointed at server (see the module docstring)."""
    names = set(demo_provider_names(settings))
    providers: dict[str, ProviderSettings] = {}
    source = dict(settings.providers)
    if "demo" in names and "demo" not in source:
        source["demo"] = ProviderSettings(type="demo")
    twins = {n for n in names if n + OPENAI_SUFFIX not in source}  # never shadow a user's
    key = SecretStr(server.key)
    for name, conf in source.items():
        if name not in names:
            providers[name] = conf
            continue
        common = {"api_key": key, "max_retries": 0, "headers": {}}
        providers[name] = conf.model_copy(
            update={"type": "anthropic", "base_url": server.anthropic_url, **common}
        )
        if name in twins:
            update = {"type": "openai", "base_url": server.openai_url, **common}
            providers[name + OPENAI_SUFFIX] = conf.model_copy(update=update)

    def twin(routes: list[RouteTarget]) -> list[RouteTarget]:
        out: list[RouteTarget] = []
        for r in routes:
            out.append(r)
            if r.provider in twins:  # same priority and weight: the router keeps one per format
                out.append(r.model_copy(update={"provider": r.provider + OPENAI_SUFFIX}))
        return out

    skills = {
        n: p if p.routes is None else p.model_copy(update={"routes": twin(p.routes)})
        for n, p in settings.skills.items()
    }
    update = {"providers": providers, "routes": twin(list(settings.routes)), "skills": skills}
    return settings.model_copy(update=update)


@asynccontextmanager
async def demo_upstream(settings: Settings) -> AsyncIterator[Settings]:
    """Start the demo server when settings configure a demo provider; yield the settings the
    runtime should use (unchanged when there is none); stop the server on exit."""
    if not demo_provider_names(settings):
        yield settings
        return
    server = DemoServer()
    await server.start()
    log.warning("DEMO PROVIDER on %s: responses are scripted, no real model", server.anthropic_url)
    try:
        yield with_demo_providers(settings, server)
    finally:
        await server.stop()
