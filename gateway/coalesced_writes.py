"""A transport wrapper that sends what a connection writes in one event-loop tick at once.

uvicorn writes a response's head and its body with two transport.write() calls, and uvloop
sends each at once: two send() syscalls, each delivering to the peer's socket. Most of our
answers are complete bodies sent in the same tick as their head, so joining the writes of a
tick saves a syscall per response (~25-30 us of CPU per request on loopback under load,
bench/gateway_bench.py). A write is held only until the end of the current tick, so a
stream's head and events leave as soon as they did before.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CoalescedWrites"]


class CoalescedWrites:
    """Wraps an asyncio transport: write() is joined per tick, close() sends what is held
    first, abort() drops it; everything else is the transport's own."""

    __slots__ = ("_held", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._held.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():  # the peer went away: nothing to send to
            self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
