"""Server-sent events: an incremental decoder (bytes -> events) and an encoder (events -> bytes).

Format-agnostic and pure. Follows the WHATWG event-stream parsing rules: lines end with CRLF,
LF or CR; `:` starts a comment; `data` lines accumulate; a blank line dispatches. Lines are cut
on bytes before decoding, so a chunk boundary inside a multi-byte UTF-8 character, inside a
CRLF pair or inside a field never matters (CR and LF never occur inside a UTF-8 sequence).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "SSEDecoder",
    "SSEError",
    "SSEEvent",
    "encode_event",
    "encode_events",
]

# Claude Code turn bodies are ~100 KB; a single streamed event is far smaller. 8 MiB bounds
# memory while leaving room for providers that send a whole message in one event.
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024


class SSEError(ValueError):
    """The byte stream is not a usable event stream (e.g. an event over the size bound)."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event; `comment` is set (and data empty) for a comment line."""

    data: str = ""
    event: str | None = None
    id: str | None = None
    retry: int | None = None
    comment: str | None = None


class SSEDecoder:
    """Feed bytes in any chunking, get complete events out. Not thread-safe; one per stream."""

    __slots__ = (
        "_data",
        "_event",
        "_event_bytes",
        "_id",
        "_keep_comments",
        "_max",
        "_pending",
        "_pending_len",
        "_retry",
        "_skip_lf",
        "_started",
    )

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, keep_comments: bool = True
    ) -> None:
        self._max = max_event_bytes
        self._keep_comments = keep_comments
        self._pending: list[bytes] = []  # an unterminated line, in pieces (no quadratic joins)
        self._pending_len = 0
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._started = False  # a UTF-8 BOM is only stripped from the very first line
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._event_bytes = 0

    @property
    def has_partial(self) -> bool:
        """True when bytes of an undispatched event are buffered (a truncated stream at EOF)."""
        return bool(self._pending_len or self._data or self._event or self._id)

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume a chunk; return the events it completes, in order."""
        if self._skip_lf and chunk:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
        if not chunk:
            return []
        if b"\n" not in chunk and b"\r" not in chunk:
            self._pending.append(chunk)
            self._pending_len += len(chunk)
            self._check(self._pending_len)
            return []
        if self._pending:
            self._pending.append(chunk)
            chunk = b"".join(self._pending)
            self._pending.clear()
            self._pending_len = 0
        # bytes.splitlines cuts exactly on CRLF, CR and LF (unlike str.splitlines).
        lines = chunk.splitlines(keepends=True)
        last = lines[-1]
        if last[-1] not in (0x0A, 0x0D):
            lines.pop()
            self._pending.append(last)
            self._pending_len = len(last)
            self._check(self._pending_len)
        elif last[-1] == 0x0D:
            self._skip_lf = True
        out: list[SSEEvent] = []
        for raw in lines:
            self._line(raw.rstrip(b"\r\n"), out)
        return out

    def close(self) -> list[SSEEvent]:
        """End of stream. Per the spec an event without its closing blank line is dropped."""
        self._pending.clear()
        self._pending_len = 0
        self._reset()
        return []

    def _check(self, size: int) -> None:
        if self._event_bytes + size > self._max:
            raise SSEError(f"server-sent event exceeds {self._max} bytes")

    def _reset(self) -> None:
        self._data = []
        self._event = None
        self._id = None
        self._retry = None
        self._event_bytes = 0

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        if not self._started:
            self._started = True
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        if not raw:
            if self._data:
                out.append(SSEEvent("\n".join(self._data), self._event, self._id, self._retry))
            self._reset()
            return
        self._event_bytes += len(raw) + 1
        self._check(0)
        line = raw.decode("utf-8", "replace")
        field, sep, value = line.partition(":")
        if not field and sep:
            self._event_bytes -= len(raw) + 1  # comments are not part of any event
            if self._keep_comments:
                out.append(SSEEvent(comment=value[1:] if value.startswith(" ") else value))
            return
        if sep and value.startswith(" "):
            value = value[1:]
        self._field(field, value)

    def _field(self, field: str, value: str) -> None:
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)


def encode_event(ev: SSEEvent) -> bytes:
    """Serialise one event (or comment) with LF line endings and a closing blank line."""
    if ev.comment is not None:
        return "".join(f": {c}\n" for c in _split(ev.comment)).encode() + b"\n"
    head = ""
    if ev.event is not None:
        head = f"event: {ev.event}\n"
    if ev.id is not None:
        head += f"id: {ev.id}\n"
    if ev.retry is not None:
        head += f"retry: {ev.retry}\n"
    data = ev.data
    if "\n" in data or "\r" in data:
        body = "".join(f"data: {d}\n" for d in _split(data))
    else:
        body = f"data: {data}\n"
    return f"{head}{body}\n".encode()


def encode_events(events: Iterable[SSEEvent]) -> bytes:
    """Serialise several events into one chunk."""
    return b"".join(encode_event(e) for e in events)


def _split(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
