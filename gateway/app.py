"""create_app(settings): the FastAPI app, its lifespan (stores, bootstrap) and routes."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api import admin, admin_audit, check, health, proxy
from gateway.api import metrics as metrics_api
from gateway.api.dispatch import GatewayApp
from gateway.api.responses import admin_error_response
from gateway.bootstrap import bootstrap, prepare_data_dir
from gateway.errors import ErrorCode, GatewayError
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings, load_settings
from gateway.state.keys import open_key_store
from skills_registry.manifest import Problem
from skills_registry.store import open_skill_store

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("skillwarden")
_HTTP_CODES: dict[int, ErrorCode] = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def create_app(
    settings: Settings, *, run_bootstrap: bool = True, say: Callable[[str], None] = print
) -> FastAPI:
    """The gateway app. `say` prints first-start notices (keys shown once) to the terminal."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_data_dir(settings)
        skill_store = open_skill_store(settings.storage_url)
        key_store = open_key_store(settings.storage_url)
        await skill_store.open()
        try:
            await key_store.open()
            try:
                app.state.skill_store = skill_store
                app.state.key_store = key_store
                app.state.bootstrap = (
                    await bootstrap(settings, skill_store, key_store, say)
                    if run_bootstrap
                    else None
                )
                async with proxy.runtime_lifespan(app, settings) as rt:
                    _tune_gc()
                    with app.state.metrics.attached(rt):  # finish() finds the app's metrics
                        yield
            finally:
                await key_store.close()
        finally:
            await skill_store.close()

    app = GatewayApp(  # FastAPI, with a direct path for the proxy POSTs
        title="Skillwarden",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.skill_count = None
    app.state.metrics = GatewayMetrics()  # this app's own registry, served at GET /metrics
    app.include_router(health.router)
    proxy.install(app, settings)
    app.include_router(check.router)  # POST /v1/tool-calls/check
    app.include_router(metrics_api.router)  # GET /metrics
    if settings.admin.enabled:
        app.include_router(admin.router)
        app.include_router(admin_audit.router)  # GET /admin/audit
        from gateway.api.ui import router as ui_router  # one-line mount: app.py is shared

        app.include_router(ui_router)  # GET /ui/, /ui/skills/{name}: read-only review page
    _install_error_handlers(app)
    return app


def _tune_gc() -> None:
    """Young-generation collections 14x rarer than CPython's default (700). Every request
    allocates hundreds of containers (its parsed body, aiohttp and uvicorn objects) that die
    by refcount when it ends; at 700 a collection ran every few requests and promoted the
    in-flight requests' objects into older generations that were then walked again. Measured
    ~6% less CPU per request on Claude Code's 78 KB body at 32 connections (py-spy/perf under
    bench/gateway_bench.py load). Cycles are still collected, a few thousand allocations on.
    """
    gc.set_threshold(10_000, 10, 10)


def create_app_from_env() -> FastAPI:
    """uvicorn factory for `serve --workers N`: settings from $SKILLWARDEN_CONFIG and env.

    The CLI has already validated the config and run the bootstrap once, before forking.
    """
    return create_app(load_settings(None), run_bootstrap=False)


def _install_error_handlers(app: FastAPI) -> None:
    async def on_gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return admin_error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "invalid_request")
        return admin_error_response(GatewayError(code, exc.status_code, str(exc.detail)))

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = [Problem(".".join(str(p) for p in e["loc"]), e["msg"], "") for e in exc.errors()]
        error = GatewayError("invalid_request", 422, "invalid request", problems=problems)
        return admin_error_response(error)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return admin_error_response(GatewayError("api_error", 500, "internal error"))

    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)
