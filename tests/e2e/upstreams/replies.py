"""What a scripted upstream answers: a Reply (status, headers, body pieces, timing, failures)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """One scripted answer. Stream bodies go out chunked, one chunk per piece, flushed each.

    Failure knobs (combine freely): ``first_byte_delay`` before the status line; ``pace`` between
    pieces; ``stall_after``/``stall_for`` go silent after N pieces; ``drop_after`` closes the TCP
    connection after N pieces (0: before any response byte).
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    pieces: tuple[bytes, ...] = ()
    stream: bool = False
    first_byte_delay: float = 0.0
    pace: float = 0.0
    stall_after: int | None = None
    stall_for: float = 0.0
    drop_after: int | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)

    def slow(self, first_byte_delay: float) -> Reply:
        return dataclasses.replace(self, first_byte_delay=first_byte_delay)

    def paced(self, seconds: float) -> Reply:
        return dataclasses.replace(self, pace=seconds)

    def stalled(self, after: int, seconds: float) -> Reply:
        return dataclasses.replace(self, stall_after=after, stall_for=seconds)

    def dropped(self, after: int) -> Reply:
        return dataclasses.replace(self, drop_after=after)

    def rechunked(self, size: int) -> Reply:
        """The same bytes cut every ``size`` bytes (inside events, inside UTF-8 characters);
        add ``.paced()`` so that the pieces also arrive in separate reads."""
        body = self.body
        return dataclasses.replace(
            self, pieces=tuple(body[i : i + size] for i in range(0, len(body), size))
        )


def json_reply(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON body (compact, like the real APIs)."""
    hdrs = {"content-type": "application/json", **(headers or {})}
    return Reply(status=status, headers=hdrs, pieces=(orjson.dumps(obj),))


def raw_reply(
    body: bytes, content_type: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> Reply:
    """Any bytes with any content type, sent as one piece."""
    return Reply(
        status=status, headers={"content-type": content_type, **(headers or {})}, pieces=(body,)
    )


def sse_reply(events: Iterable[bytes], headers: Mapping[str, str] | None = None) -> Reply:
    """An SSE stream: one piece per event (see sse_event / the stream builders)."""
    hdrs = {"content-type": SSE_CONTENT_TYPE, "cache-control": "no-cache", **(headers or {})}
    return Reply(headers=hdrs, pieces=tuple(events), stream=True)


def sse_raw_reply(raw: bytes) -> Reply:
    """Replay captured SSE bytes (e.g. reference mock_responses/*.sse), one piece per event."""
    events = [e + b"\n\n" for e in raw.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
    return sse_reply(events)


def sse_event(data: Any, event: str | None = None) -> bytes:
    """One SSE event; ``data`` is JSON-encoded unless it is already bytes/str."""
    if isinstance(data, bytes):
        payload = data
    elif isinstance(data, str):
        payload = data.encode()
    else:
        payload = orjson.dumps(data)
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


HTML_502 = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>cloudflare</center>
</body>
</html>
"""


def html_reply(status: int = 502, body: bytes = HTML_502) -> Reply:
    """What a load balancer in front of a provider answers when the provider is down."""
    return raw_reply(body, "text/html", status)


def malformed_json_reply(status: int = 200) -> Reply:
    """Declared JSON, cut in the middle of an object."""
    return raw_reply(
        b'{"id": "msg_01", "type": "message", "content": [{"type": "te', "application/json", status
    )


def drop_connection() -> Reply:
    """Close the TCP connection before sending any response byte."""
    return Reply(drop_after=0)
