"""Scripted provider servers on free loopback ports (aiohttp.web), recording every request."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import orjson
from aiohttp import web

from . import anthropic_api as a
from . import openai_api as o
from .replies import Reply, json_reply, sse_reply

Script = Reply | Callable[["RecordedRequest"], Reply]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    raw_headers: tuple[tuple[str, str], ...]  # as sent, in order, original case
    body: bytes
    peer: tuple[str, int]

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def wants_stream(self) -> bool:
        try:
            return bool(self.json().get("stream"))
        except (orjson.JSONDecodeError, AttributeError):
            return False


class ScriptedUpstream:
    """Answers from per-path queues of Replies (or callables); a default when a queue is empty."""

    main_path = "/"

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._queues: dict[str, deque[Script]] = {}
        self._peers: set[tuple[str, int]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gives up (timeout tests) ends our sleep too.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- scripting and inspection --------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *replies: Script, path: str | None = None) -> None:
        """Queue answers for ``path`` (default: the main endpoint), used once each, in order."""
        self._queues.setdefault(path or self.main_path, deque()).extend(replies)

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def connections_opened(self) -> int:
        """Distinct client connections seen (by peer address)."""
        return len(self._peers)

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        server = self._runner.server if self._runner else None
        return len(server.connections) if server is not None else 0

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]

    def default_reply(self, req: RecordedRequest) -> Reply:
        return json_reply({"error": f"no route for {req.method} {req.path}"}, 404)

    # -- serving -------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=_joined(request.raw_headers),
            raw_headers=tuple((k.decode(), v.decode()) for k, v in request.raw_headers),
            body=await request.read(),
            peer=tuple(peer[:2]) if peer else ("", 0),
        )
        self.requests.append(rec)
        self._peers.add(rec.peer)
        queue = self._queues.get(request.path)
        script = queue.popleft() if queue else self.default_reply
        reply = script if isinstance(script, Reply) else script(rec)
        return await _play(request, reply)


def _joined(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in raw:
        key, val = k.decode().lower(), v.decode()
        out[key] = f"{out[key]}, {val}" if key in out else val
    return out


async def _play(request: web.Request, reply: Reply) -> web.StreamResponse:
    if reply.first_byte_delay:
        await asyncio.sleep(reply.first_byte_delay)
    resp = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
    if reply.drop_after == 0:
        _drop(request)
        return resp
    if not reply.stream:
        resp.content_length = len(reply.body)
    await resp.prepare(request)
    for i, piece in enumerate(reply.pieces):
        if i and reply.pace:
            await asyncio.sleep(reply.pace)
        if i == reply.stall_after:
            await asyncio.sleep(reply.stall_for)
        if i == reply.drop_after:
            _drop(request)
            return resp
        await resp.write(piece)
    if reply.stall_after is not None and reply.stall_after >= len(reply.pieces):
        await asyncio.sleep(reply.stall_for)
    if reply.drop_after is not None:  # drop after everything: no chunked terminator
        _drop(request)
        return resp
    await resp.write_eof()
    return resp


def _drop(request: web.Request) -> None:
    # close() flushes what was written, then sends FIN: the client sees a truncated body.
    if request.transport is not None:
        request.transport.close()


class ScriptedAnthropic(ScriptedUpstream):
    """POST /v1/messages (stream or not), /v1/messages/count_tokens, GET /v1/models."""

    main_path = "/v1/messages"
    default_text = "Hello from the scripted Anthropic upstream."

    def default_reply(self, req: RecordedRequest) -> Reply:
        if req.path == "/v1/messages" and req.method == "POST":
            if req.wants_stream:
                return sse_reply(a.anthropic_text_stream(self.default_text))
            return json_reply(a.anthropic_message(self.default_text))
        if req.path == "/v1/messages/count_tokens" and req.method == "POST":
            return json_reply({"input_tokens": max(1, len(req.body) // 4)})
        if req.path == "/v1/models" and req.method == "GET":
            ids = ["claude-opus-4-8", "claude-sonnet-4-5", "claude-haiku-4-5"]
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in ids
            ]
            return json_reply(
                {"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
            )
        return a.anthropic_error(404, f"Not found: {req.method} {req.path}")


class ScriptedOpenAI(ScriptedUpstream):
    """POST /v1/chat/completions (stream or not, include_usage honoured), GET /v1/models."""

    main_path = "/v1/chat/completions"
    default_text = "Hello from the scripted OpenAI upstream."

    def default_reply(self, req: RecordedRequest) -> Reply:
        if req.path == "/v1/chat/completions" and req.method == "POST":
            if req.wants_stream:
                opts = req.json().get("stream_options") or {}
                usage = bool(opts.get("include_usage"))
                return sse_reply(o.openai_text_stream(self.default_text, include_usage=usage))
            return json_reply(o.openai_completion(self.default_text))
        if req.path == "/v1/models" and req.method == "GET":
            data = [
                {"id": m, "object": "model", "created": 1721172741, "owned_by": "system"}
                for m in ("gpt-4o-mini-2024-07-18", "gpt-4o")
            ]
            return json_reply({"object": "list", "data": data})
        return o.openai_error(404, f"Invalid URL ({req.method} {req.path})")


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()
