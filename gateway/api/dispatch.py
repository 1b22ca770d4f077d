"""A pure-ASGI fast path in front of FastAPI for the proxy routes (DESIGN.md §7).

Every agent turn is a POST to /v1/messages, /v1/messages/count_tokens or
/v1/chat/completions. Through FastAPI such a request crosses six middleware layers and the
route table before proxy.py's handler runs: about a tenth of the gateway's CPU per request
(py-spy under bench/gateway_bench.py). GatewayApp looks the exact path up in a dict and calls
the same ProxyEndpoint on the bare ASGI scope; everything else (other paths and methods,
redirects, 405s, lifespan) goes through FastAPI unchanged.

The handlers answer every refusal themselves (errors in the client's format, audited), so the
middleware the fast path skips only ever acted on exceptions escaping them: those are handled
here as FastAPI would, with the app's exception handlers, and re-raised to the server when
ServerErrorMiddleware would have (its handler answers 500 first if nothing was sent yet).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from gateway.api.proxy import ProxyEndpoint

__all__ = ["FAST_PATHS", "GatewayApp"]

FAST_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions"})
_Respond = Callable[[Scope, Receive], Awaitable[Response]]
_Handler = Callable[[Request, Exception], Any]  # Starlette allows sync handlers too


class GatewayApp(FastAPI):
    """FastAPI, with the POST proxy routes dispatched directly to their handlers."""

    _fast: dict[str, _Respond] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            respond = self._fast_routes().get(scope["path"])
            if respond is not None:
                scope["app"] = self  # what Starlette sets; the handlers read app.state
                await self._dispatch(respond, scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _fast_routes(self) -> dict[str, _Respond]:
        """The ProxyEndpoints proxy.install() mounted, by path (built on first use: the
        routes are all in place once the server calls the app)."""
        if self._fast is None:
            self._fast = {}
            for r in self.router.routes:
                target = getattr(getattr(r, "endpoint", None), "__self__", None)
                if (
                    isinstance(r, Route)
                    and r.path in FAST_PATHS
                    and isinstance(target, ProxyEndpoint)
                ):
                    self._fast[r.path] = target.respond
        return self._fast

    async def _dispatch(
        self, respond: _Respond, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            response = await respond(scope, receive)
            await response(scope, receive, tracked)
        except Exception as exc:
            caught, handler = self._handler_for(exc)
            if started or handler is None:
                raise  # as Starlette: nothing can be answered any more
            answer = handler(Request(scope, receive, send), exc)
            response = await answer if inspect.isawaitable(answer) else answer
            await response(scope, receive, send)
            if caught is Exception:
                raise  # ServerErrorMiddleware answers, then lets the server log it

    def _handler_for(self, exc: Exception) -> tuple[type, _Handler | None]:
        """The handler of the most specific registered class, as Starlette looks it up."""
        for cls in type(exc).__mro__:
            found = self.exception_handlers.get(cls)
            if found is not None:
                return cls, found
        return Exception, None
