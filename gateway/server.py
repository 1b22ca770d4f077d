"""The uvicorn stack the gateway runs on: one place for `skillwarden serve` and the e2e tests.

uvicorn + uvloop + httptools, with one change: `GatewayHttpProtocol`, which answers a request
whose head llhttp refuses (a control character in a header value, a header name that is not a
token, duplicated Content-Length, Transfer-Encoding with Content-Length, obs-fold...) in the
client's JSON format, with one audit record, instead of uvicorn's plain-text
"Invalid HTTP request received." that no SDK can read and nobody audits.

Why not make llhttp lenient (`set_dangerous_leniencies(lenient_headers=True)`) and let the
proxy refuse control characters? Because that flag is far wider than "control characters in
values". Measured with httptools 0.9.0 (its bundled llhttp 9.x); with it on, the parser also
accepts:

- a bare LF as the end of a header line once a value holds a control character:
  `X-A: a\\x01\\nTransfer-Encoding: chunked` becomes two headers, chunked framing included;
- a bare CR as the end of an empty value: `X-A: \\rContent-Length: 5` becomes two headers;
- whitespace before the colon: `Transfer-Encoding : chunked` frames the body as chunked;
- obs-fold continuation lines and whitespace before the first header.

Each is a header-splitting or request-smuggling vector (a proxy in front and the gateway would
disagree on where the request ends), which is why llhttp documents the flag as dangerous.
llhttp 9.3's narrow `lenient_header_value_relaxed` (control characters but never NUL, CR, LF)
is compiled into the library but httptools does not expose it.

So the parser stays strict and only the *answer* changes. When llhttp fails while reading the
head of a request to a proxy route (`proxy.EDGE_ROUTES`: method and path are known, since
they precede the headers), the protocol hands the app a request with the headers parsed so
far (each one already validated), no body, and the scope extension `proxy.BAD_HEAD`; the
proxy refuses it (400 invalid_request in the client's format, audited through the runtime)
before reading anything else. The connection closes after that answer and every byte after
the bad head is dropped: its framing is unknown, so nothing there is ever parsed or run.
Even a handler that ignored the extension could not forward anything: the body is empty.
Any other parse failure (no request line, another path, an error in a chunked body) gets a
JSON 400 written by the protocol itself, valid for both SDKs, and the connection closes, as
uvicorn did. The hot path is untouched: only `send_400_response` is overridden.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from typing import Any, cast

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from gateway.api.proxy import BAD_HEAD, EDGE_ROUTES
from gateway.coalesced_writes import CoalescedWrites
from gateway.settings import Settings

__all__ = ["GatewayHttpProtocol", "server_config", "serve_options"]


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; a request llhttp refuses is answered in JSON (see above),
    and the writes of one event-loop tick are sent together."""

    _refused = False  # a class default: no per-connection cost

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # A response's head and body leave in one send() (gateway/coalesced_writes.py).
        super().connection_made(cast(asyncio.Transport, CoalescedWrites(transport, self.loop)))

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this from data_received's `except HttpParserError` block, so the
        # parser's own reason is the exception being handled.
        if self._refused:
            return  # llhttp stays in its error state: later data fails again and is dropped
        self._refused = True
        exc = sys.exception()
        reason = str(exc)[:200] if isinstance(exc, httptools.HttpParserError) else ""
        reason = reason.encode("ascii", "replace").decode() or "malformed HTTP request"
        if not self._refuse_in_app(reason):
            self._write_json_400(f"malformed HTTP request: {reason}")

    def _refuse_in_app(self, reason: str) -> bool:
        """Hand a bad head on a proxy route to the app to refuse and audit; False if not one."""
        scope = self.scope
        # Before any request, or past the head (the app is already reading this body): no.
        if scope is None or "method" in scope or not self.url:
            return False
        try:
            url = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            return False
        method = self.parser.get_method().decode("ascii", "replace")  # known: the URL follows it
        path = url.path.decode("ascii", "replace")
        if (method, path) not in EDGE_ROUTES:
            return False
        scope["method"] = method
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + url.path
        scope["query_string"] = url.query or b""
        scope["extensions"] = {BAD_HEAD: {"reason": reason}}
        cycle = RequestResponseCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,  # never invite the body
            keep_alive=False,  # the stream after the bad head is unparseable: close after
            on_response=self.on_response_complete,
        )
        cycle.more_body = False  # an empty body: nothing past the head reaches the app
        cycle.message_event.set()
        existing, self.cycle = self.cycle, cycle
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, self.app)
        else:  # pipelined behind a request still answering: queue it as uvicorn does
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))
        return True

    def _write_json_400(self, message: str) -> None:
        # Both SDKs read error.message; "type" + error.type is Anthropic's shape, error.code
        # OpenAI's.
        error = {"type": "invalid_request_error", "message": message, "code": "invalid_request"}
        body = json.dumps({"type": "error", "error": error}).encode()
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(head))
        self.transport.close()


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus our "skillwarden.*" loggers (admin publishes, bootstrap)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["skillwarden"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def _stack(*, proxy_headers: bool, log_level: str) -> dict[str, Any]:
    return {
        "loop": "uvloop",
        "http": GatewayHttpProtocol,
        # uvicorn trusts X-Forwarded-For/-Proto from 127.0.0.1 by default; we trust nobody
        # unless server.proxy_headers says a trusted proxy is in front.
        "proxy_headers": proxy_headers,
        "log_level": log_level,
        "lifespan": "on",
        "server_header": False,
    }


def serve_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run in `skillwarden serve` (every worker gets them)."""
    s = settings.server
    return {
        **_stack(proxy_headers=s.proxy_headers, log_level=s.log_level),
        "log_config": _log_config(s.log_level),
        "host": s.host,
        "port": s.port,
    }


def server_config(
    app: Any, *, proxy_headers: bool = False, log_level: str = "warning", **extra: Any
) -> uvicorn.Config:
    """The same stack for an in-process server serving `app` (the e2e harness; a bench can
    pass e.g. access_log=False in `extra`)."""
    options = _stack(proxy_headers=proxy_headers, log_level=log_level)
    return uvicorn.Config(app, **{**options, **extra})
