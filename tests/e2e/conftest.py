"""Run the real gateway app under uvicorn on a free loopback port: settings in, base URL out.

    def test_x(start_gateway, gateway_settings):
        url = start_gateway(gateway_settings)            # create_app(settings) under uvicorn
        url = start_gateway(settings, app=my_asgi_app)   # or any ASGI app (scripted upstreams)

Servers run in background threads, each with its own event loop, and are shut down cleanly
(lifespan shutdown included) when the test ends.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gateway.app import create_app
from gateway.server import server_config
from gateway.settings import Settings, load_settings
from gateway.state.keys import open_key_store
from tests.e2e.upstreams.fixtures import *  # noqa: F403  (scripted_anthropic, scripted_openai, refused_url)

StartGateway = Callable[..., str]


class ServerThread:
    """One uvicorn server on an already-bound socket (no port race), in its own thread."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", **config: Any) -> None:
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only for that
        # proto, and without it Nagle + delayed ACK add ~40 ms to every response.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        # The stack `skillwarden serve` runs: uvloop, GatewayHttpProtocol, no proxy headers.
        self.config = server_config(app, **config)
        self.server = uvicorn.Server(self.config)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self.config.get_loop_factory()) as runner:
                runner.run(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:  # surfaced in start() / stop()
            self.error = exc

    def start(self, timeout: float = 20.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gateway did not start on {self.url}: {self.error!r}")
            time.sleep(0.01)
        return self.url

    def stop(self, timeout: float = 20.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.sock.close()
        if self.thread.is_alive():
            raise RuntimeError(f"gateway on {self.url} did not shut down in {timeout}s")


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve any ASGI app for the duration of a with-block; yields its base URL."""
    server = ServerThread(app)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def embedded_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Embedded defaults (SQLite under data_dir, memory state), no environment read."""
    return load_settings(None, {}, {"data_dir": str(data_dir), **overrides})


@pytest.fixture
def gateway_settings(tmp_path: Path) -> Settings:
    return embedded_settings(tmp_path / "data")


@pytest.fixture
def start_gateway() -> Iterator[StartGateway]:
    """Factory: start_gateway(settings, app=None, **create_app_kwargs) -> base URL."""
    servers: list[ServerThread] = []

    def start(settings: Settings, app: Any = None, **kwargs: Any) -> str:
        kwargs.setdefault("say", lambda _text: None)  # keep first-start banners out of logs
        server = ServerThread(app if app is not None else create_app(settings, **kwargs))
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()


def create_key(settings: Settings, kind: str, consumer: str = "tester") -> str:
    """A fresh API key in the gateway's key store (before or while it runs); returns plaintext."""

    async def make() -> str:
        store = open_key_store(settings.storage_url)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await store.open()
        try:
            _, plaintext = await store.create(kind, consumer, None)  # type: ignore[arg-type]
            return plaintext
        finally:
            await store.close()

    return asyncio.run(make())
