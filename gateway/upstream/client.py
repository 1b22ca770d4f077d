"""The one place that talks to providers: pooled sessions, header rules, typed errors.

- One ``aiohttp.ClientSession`` per provider (``start()``/``close()``): keep-alive reuse; no
  cookie jar (provider cookies must not travel between consumers); redirects never followed
  (that would resend the provider key wherever the redirect points).
- Bodies are decoded (``auto_decompress``): the gateway reads the JSON and SSE it forwards, so
  reply headers lose ``content-encoding``/``content-length`` and the edge frames its own body.
- Timeouts by phase: ``connect`` (pool wait, DNS, TCP, TLS), ``first_byte`` (request written ->
  response head), ``idle`` (silence between body chunks), ``total`` (whole exchange, body too).
- Errors carry provider name and elapsed time, never the key, and never chain the aiohttp
  exception (some hold the request headers, key included): its class name is kept as text.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import aiohttp
import orjson

from gateway.upstream.target import (
    DROPPED_REPLY_HEADERS,
    FORWARDED_HEADERS,
    FORWARDED_PREFIXES,
    PoolLimits,
    ProviderTarget,
    Timeouts,
)

__all__ = [
    "FORWARDED_HEADERS",
    "FORWARDED_PREFIXES",
    "DROPPED_REPLY_HEADERS",
    "PoolLimits",
    "ProviderTarget",
    "Timeouts",
    "UpstreamClient",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamReply",
    "UpstreamTimeout",
    "parse_json_body",
]

TimeoutPhase = Literal["connect", "first_byte", "idle", "total"]


class UpstreamError(Exception):
    """Base of every upstream failure: provider name, elapsed ms, a key-free detail, and a short
    ``code`` for audit records (connect | timeout:<phase> | protocol)."""

    code = "upstream"

    def __init__(self, provider: str, elapsed_ms: float, detail: str) -> None:
        self.provider = provider
        self.elapsed_ms = elapsed_ms
        self.detail = detail
        super().__init__(f"upstream {provider!r}: {detail} (after {elapsed_ms:.0f} ms)")


class UpstreamConnectError(UpstreamError):
    """No connection could be made: the request never reached the provider."""

    code = "connect"


class UpstreamTimeout(UpstreamError):
    """A phase ran out of time: connect, first_byte, idle (between chunks) or total."""

    def __init__(self, provider: str, elapsed_ms: float, phase: TimeoutPhase) -> None:
        self.phase: TimeoutPhase = phase
        self.code = f"timeout:{phase}"
        super().__init__(provider, elapsed_ms, f"{phase} timeout")


class UpstreamProtocolError(UpstreamError):
    """Broken exchange: dropped connection, malformed HTTP, oversize or unexpected body.

    ``head_received`` is False when the provider sent no response head at all.
    """

    code = "protocol"

    def __init__(self, provider: str, elapsed_ms: float, detail: str, head_received: bool) -> None:
        self.head_received = head_received
        super().__init__(provider, elapsed_ms, detail)


def _map_error(exc: BaseException, provider: str, started: float, head: bool) -> UpstreamError:
    ms = (time.perf_counter() - started) * 1000.0
    cause = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout(provider, ms, "connect")
    if isinstance(exc, aiohttp.ServerTimeoutError):  # sock_read: silence from the provider
        return UpstreamTimeout(provider, ms, "idle" if head else "first_byte")
    if isinstance(exc, TimeoutError):  # aiohttp's total timer raises a plain TimeoutError
        return UpstreamTimeout(provider, ms, "total")
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.strerror or cause
        return UpstreamConnectError(provider, ms, f"cannot connect ({cause}: {reason})")
    where = "mid-body" if head else "before the response head"
    return UpstreamProtocolError(provider, ms, f"connection broken {where} ({cause})", head)


_CLIENT_ERRORS = (aiohttp.ClientError, TimeoutError)


class UpstreamReply:
    """One provider response. Read it with read_body() or iterate it (streams); then release()."""

    __slots__ = ("_done", "_headers", "_resp", "_started", "head_ms", "is_stream", "provider")

    def __init__(self, provider: ProviderTarget, resp: aiohttp.ClientResponse, started: float):
        self.provider = provider.name
        self._resp = resp
        self._started = started
        self._headers: dict[str, str] | None = None
        self._done = False
        self.head_ms = (time.perf_counter() - started) * 1000.0
        self.is_stream = resp.content_type == "text/event-stream"
        conn = resp.connection
        if conn is not None and conn.protocol is not None and not resp.content.is_eof():
            # From here on, sock_read measures silence between chunks.
            conn.protocol.read_timeout = provider.timeouts.idle
            conn.protocol.start_timeout()

    def __repr__(self) -> str:
        return f"<UpstreamReply {self.provider} {self.status} stream={self.is_stream}>"

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def content_type(self) -> str:
        return self._resp.content_type

    @property
    def headers(self) -> dict[str, str]:
        """Reply headers, lower-cased, minus DROPPED_REPLY_HEADERS; repeats joined with ', '."""
        if self._headers is None:
            out: dict[str, str] = {}
            for name, value in self._resp.headers.items():
                key = name.lower()
                if key not in DROPPED_REPLY_HEADERS:
                    out[key] = f"{out[key]}, {value}" if key in out else value
            self._headers = out
        return self._headers

    @property
    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self._started) * 1000.0

    def protocol_error(self, detail: str) -> UpstreamProtocolError:
        """An UpstreamProtocolError for this reply, for problems the caller finds in the body."""
        return UpstreamProtocolError(self.provider, self.elapsed_ms, detail, True)

    async def read_body(self, max_bytes: int) -> bytes:
        """The whole (decoded) body; UpstreamProtocolError past max_bytes. Releases the reply."""
        content = self._resp.content
        declared = self._resp.content_length
        parts: list[bytes] = []
        size = 0
        try:
            if declared is not None and declared > max_bytes:
                raise self.protocol_error(f"body of {declared} bytes exceeds {max_bytes}")
            while chunk := await content.readany():
                size += len(chunk)
                if size > max_bytes:
                    raise self.protocol_error(f"body exceeds {max_bytes} bytes")
                parts.append(chunk)
        except _CLIENT_ERRORS as exc:
            raise _map_error(exc, self.provider, self._started, True) from None
        finally:
            self.release()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def iter_chunks(self) -> UpstreamReply:
        """Body chunks as they arrive (idle timeout between them). Releases at the end or on
        error; a consumer that stops early (client gone, cancelled) must call release()."""
        return self

    def __aiter__(self) -> UpstreamReply:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            chunk = await self._resp.content.readany()
        except _CLIENT_ERRORS as exc:
            self.release()
            raise _map_error(exc, self.provider, self._started, True) from None
        if not chunk:
            self.release()
            raise StopAsyncIteration
        return chunk

    def release(self) -> None:
        """Give the connection back (body complete) or close it (body not read to the end)."""
        if self._done:
            return
        self._done = True
        if self._resp.content.is_eof():
            self._resp.release()
        else:
            self._resp.close()  # a half-read connection cannot be reused

    async def __aenter__(self) -> UpstreamReply:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


def parse_json_body(reply: UpstreamReply, body: bytes) -> Any:
    """The body as JSON, or UpstreamProtocolError for HTML, non-JSON or malformed JSON."""
    ctype = reply.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        kind = "HTML" if body.lstrip()[:1] == b"<" else f"{ctype or 'untyped'} body"
        raise reply.protocol_error(f"expected JSON, got {kind} (status {reply.status})")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise reply.protocol_error(f"malformed JSON body (status {reply.status})") from None


class UpstreamClient:
    """Owns one pooled ClientSession per provider name; lifespan calls start() and close()."""

    def __init__(self, providers: Iterable[ProviderTarget] = (), limits: PoolLimits = PoolLimits()):
        self._limits = limits
        self._names = tuple(dict.fromkeys(p.name for p in providers))
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._started = False

    async def start(self) -> None:
        """Open a session for every provider known at construction."""
        self._started = True
        for name in self._names:
            self._session(name)

    async def close(self) -> None:
        """Close every session and its connections; in-flight replies fail."""
        self._started = False
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def __aenter__(self) -> UpstreamClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _session(self, name: str) -> aiohttp.ClientSession:
        session = self._sessions.get(name)
        if session is None:
            if not self._started:
                raise RuntimeError("UpstreamClient is not started")
            # A provider added by a config reload gets its pool on first use.
            lim = self._limits
            connector = aiohttp.TCPConnector(
                limit=lim.limit, keepalive_timeout=lim.keepalive_timeout, ttl_dns_cache=lim.dns_ttl
            )
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                trust_env=False,  # no HTTP(S)_PROXY surprises: routes are configured explicitly
            )
            self._sessions[name] = session
        return session

    async def send(
        self,
        provider: ProviderTarget,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        method: str = "POST",
    ) -> UpstreamReply:
        """One attempt: send the request and return once the response head is in."""
        session = self._session(provider.name)
        out = provider.forward_headers(headers)
        started = time.perf_counter()
        url, timeout = provider.url(path), provider._timeout
        try:
            resp = await session.request(
                method, url, data=body, headers=out, timeout=timeout, allow_redirects=False
            )
        except _CLIENT_ERRORS as exc:
            raise _map_error(exc, provider.name, started, False) from None
        return UpstreamReply(provider, resp, started)
