"""CoalescedWrites: the writes of one event-loop tick leave in one transport.write()."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gateway.coalesced_writes import CoalescedWrites


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def write_eof(self) -> None:
        self.events.append("eof")

    def abort(self) -> None:
        self.events.append("abort")
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None


def _wrap() -> tuple[CoalescedWrites, RecordingTransport]:
    inner = RecordingTransport()
    loop = asyncio.get_running_loop()
    return CoalescedWrites(cast(asyncio.Transport, inner), loop), inner


async def test_writes_of_one_tick_leave_together_and_in_order() -> None:
    joined, inner = _wrap()
    joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
    joined.write(b"{}")
    assert inner.writes == []  # held until the end of this tick
    assert joined.get_write_buffer_size() == 7 + 21
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]


async def test_a_later_write_is_not_held_for_more() -> None:
    joined, inner = _wrap()
    joined.write(b"head")
    await asyncio.sleep(0)  # a stream's head: sent at the end of its tick
    assert inner.writes == [b"head"]
    joined.writelines([b"event: a\n\n", b"event: b\n\n"])
    await asyncio.sleep(0)
    assert inner.writes == [b"head", b"event: a\n\nevent: b\n\n"]


async def test_close_and_write_eof_send_what_is_held_first() -> None:
    joined, inner = _wrap()
    joined.write(b"bye")
    joined.write_eof()
    assert (inner.writes, inner.events) == ([b"bye"], ["eof"])
    joined.write(b"last")
    joined.close()
    assert (inner.writes, inner.events) == ([b"bye", b"last"], ["eof", "close"])
    await asyncio.sleep(0)  # the scheduled flush finds nothing left
    assert inner.writes == [b"bye", b"last"]


async def test_abort_and_a_closed_peer_drop_what_is_held() -> None:
    joined, inner = _wrap()
    joined.write(b"never")
    joined.abort()
    await asyncio.sleep(0)
    assert inner.writes == [] and inner.events == ["abort"]
    joined, inner = _wrap()
    joined.write(b"gone")
    inner.closing = True  # the connection was lost before the tick ended
    await asyncio.sleep(0)
    assert inner.writes == []


async def test_everything_else_is_the_transports_own() -> None:
    joined, _ = _wrap()
    assert joined.get_extra_info("peername") == ("127.0.0.1", 1)
    assert joined.is_closing() is False
