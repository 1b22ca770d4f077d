"""Serving helpers for the bench's child processes, and the gateway process itself.

Every server binds its own loopback port and prints ``PORT <n>`` on stdout for the parent.
The listening socket is made with proto=IPPROTO_TCP and TCP_NODELAY: asyncio only sets
TCP_NODELAY on accepted sockets whose proto is IPPROTO_TCP, and a plain ``socket.socket()``
has proto 0, so a server on the asyncio loop would then let Nagle hold the response body
behind its head until the client's delayed ACK (~40 ms per request on Linux). uvloop sets
TCP_NODELAY itself; the option on the listener is inherited by accepted sockets anyway.

    python -m bench.serve gateway <data_dir> <upstream_url> [<budget state JSON>]

The optional last argument ("memory" or a `state:` mapping as JSON) gives the bench's skill a
budget that never refuses, so reserve and settle run on every request (bench/budget_variants.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

__all__ = ["bound_socket", "serve_asgi"]

PROVIDER_KEY = "sk-bench-provider-key-not-a-secret"


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve_asgi(app: Any) -> None:
    """The stack `skillwarden serve` runs (gateway/server.py: uvicorn, uvloop, httptools with
    the gateway's protocol, no proxy headers), without access log. The bare forwarder runs on
    it too: both sides of a ratio share one server stack. Prints the port once bound; the
    parent polls until the server answers."""
    from gateway.server import server_config

    sock = bound_socket()
    config = server_config(app, access_log=False)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


# Generous enough never to refuse: the bench measures the cost of counting, not of refusing.
# Two limits (tokens per day, requests per minute) as a budgeted skill typically has.
BENCH_BUDGETS = [
    {"window": "day", "tokens": 10**12},
    {"window": "minute", "requests": 10**9},
]


def gateway_settings(data_dir: Path, upstream: str, state: Any = None) -> Any:
    """Embedded SQLite (registry, keys, audit) under data_dir, both providers on the upstream;
    with `state`, code-review gets BENCH_BUDGETS counted there."""
    from gateway.settings import load_settings

    providers = {
        "anthropic": {"type": "anthropic", "base_url": upstream, "api_key": PROVIDER_KEY},
        "openai": {"type": "openai", "base_url": f"{upstream}/v1", "api_key": PROVIDER_KEY},
    }
    overrides = {"data_dir": str(data_dir), "providers": providers}
    overrides["server"] = {"log_level": "warning"}
    if state is not None:
        overrides["state"] = state
        overrides["skills"] = {"code-review": {"budgets": BENCH_BUDGETS}}
    return load_settings(None, {}, overrides)


def _gateway(data_dir: Path, upstream: str, state: Any = None) -> None:
    """As `skillwarden serve` does: bootstrap once (samples, keys), then create_app."""
    from gateway.app import create_app
    from gateway.bootstrap import bootstrap, prepare_data_dir
    from gateway.state.keys import open_key_store
    from skills_registry.store import open_skill_store

    settings = gateway_settings(data_dir, upstream, state)

    async def boot() -> str:
        prepare_data_dir(settings)
        skills, keys = open_skill_store(settings.storage_url), open_key_store(settings.storage_url)
        await skills.open()
        await keys.open()
        try:
            report = await bootstrap(settings, skills, keys, lambda _text: None)
        finally:
            await keys.close()
            await skills.close()
        assert report.agent_key, "a fresh data dir gets an agent key"
        return report.agent_key

    print(f"KEY {asyncio.run(boot())}", flush=True)
    serve_asgi(create_app(settings, run_bootstrap=False, say=lambda _text: None))


if __name__ == "__main__":
    if sys.argv[1:2] != ["gateway"] or len(sys.argv) not in (4, 5):
        raise SystemExit(
            "usage: python -m bench.serve gateway <data_dir> <upstream_url> [<state JSON>]"
        )
    _gateway(Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]) if sys.argv[4:] else None)
