"""The bench's baseline: a bare forwarder on the gateway's server stack, in its own process.

A plain ASGI app on the gateway's server stack (bench/serve.py: uvicorn, uvloop, httptools):
reads the body, forwards it with one pooled aiohttp session to the upstream, and streams the
reply back chunk by chunk. No auth, no parsing, no policy, no audit: what any proxy on this
stack costs at the least.

    python -m bench.bare_forwarder <upstream_url>   # prints "PORT <n>"
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp

from bench.serve import PROVIDER_KEY, serve_asgi

__all__ = ["BareForwarder"]

_DROPPED = frozenset(
    {b"host", b"content-length", b"connection", b"x-api-key", b"authorization", b"x-skill"}
)
_REPLY_DROPPED = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})


class BareForwarder:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        parts = []
        while True:  # bounded by the client's body: uvicorn ends it with more_body False
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k not in _DROPPED
        }
        headers["x-api-key"] = PROVIDER_KEY
        url = self.upstream + scope["path"]
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        assert self.session is not None
        async with self.session.request(
            scope["method"], url, data=b"".join(parts), headers=headers
        ) as resp:
            out = [
                (k.lower().encode(), v.encode())
                for k, v in resp.headers.items()
                if k.lower() not in _REPLY_DROPPED
            ]
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30.0)
                self.session = aiohttp.ClientSession(connector=connector)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.bare_forwarder <upstream_url>")
    serve_asgi(BareForwarder(sys.argv[1]))
