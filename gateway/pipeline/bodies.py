"""Request and response bodies for the audit record (`audit.store_bodies`, `audit.redact`).

Only used when the operator turned body storage on: with it off the pipeline never calls
into this module, so the request path keeps no copy of anything. Bodies are stored as text
(UTF-8, invalid bytes replaced), every `audit.redact` match replaced by REDACTED, and cut
to BODY_CAP characters.

Redaction runs before the cut, over a window twice the cap: a secret that straddles the
cut is replaced whole rather than stored as an unredacted prefix. Patterns run on RE2
(gateway/patterns.py): each search is linear in the body, whatever the pattern.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from gateway.patterns import compile_pattern, replace_all
from gateway.settings import AuditSettings

__all__ = ["BODY_CAP", "REDACTED", "BodyRecorder", "StoredBody", "StreamTap", "body_recorder"]

BODY_CAP = 256 * 1024  # characters kept per body (256 KiB of ASCII JSON)
_WINDOW = 2 * BODY_CAP  # bytes read for redaction; the rest of a longer body is never decoded
REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class StoredBody:
    text: str
    truncated: bool  # the body was longer than what `text` holds


class BodyRecorder:
    """The redaction patterns, compiled once per settings object."""

    __slots__ = ("_patterns",)

    def __init__(self, patterns: Sequence[str]) -> None:
        # Applied one by one, not joined with `|`: a pattern's inline flags and group numbers
        # stay its own.
        self._patterns = tuple(compile_pattern(p) for p in patterns)

    def capture(self, raw: bytes, size: int | None = None) -> StoredBody:
        """`raw` as stored text. `size`: the body's full length when `raw` is only its first
        bytes (a stream tap stops keeping bytes past the window)."""
        size = len(raw) if size is None else size
        cut = size > _WINDOW or len(raw) < size
        # An incremental decoder that is not told the input is final drops a multi-byte
        # character cut in half instead of turning it into U+FFFD.
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(raw[:_WINDOW], not cut)
        text = self.redact(text)
        if len(text) > BODY_CAP:
            return StoredBody(text[:BODY_CAP], True)
        return StoredBody(text, cut)

    def redact(self, text: str) -> str:
        return replace_all(self._patterns, text, REDACTED)


class StreamTap:
    """Keeps the first bytes of a relayed stream (up to the redaction window) and counts
    the rest, so a long stream costs no more memory than a capped body."""

    __slots__ = ("_parts", "_kept", "size")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._kept = 0
        self.size = 0

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`chunks`, unchanged, each one noted on its way out. Closing the wrapper closes
        `chunks` at once (its cleanup settles usage before the audit record is written)."""
        try:
            async for chunk in chunks:
                self.note(chunk)
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    def note(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._kept < _WINDOW:
            self._parts.append(chunk)
            self._kept += len(chunk)

    def captured(self) -> bytes:
        return b"".join(self._parts)


_recorders: dict[int, tuple[AuditSettings, BodyRecorder]] = {}


def body_recorder(audit: AuditSettings) -> BodyRecorder:
    """The recorder of these (frozen) settings, built on first use. Keyed by identity: the
    settings hold lists, so they are not hashable; the entry keeps the object alive, so an
    id is never reused for other settings while it is in the table."""
    hit = _recorders.get(id(audit))
    if hit is None or hit[0] is not audit:
        if len(_recorders) >= 16:  # one per app; tests build many
            _recorders.clear()
        hit = (audit, BodyRecorder(audit.redact))
        _recorders[id(audit)] = hit
    return hit[1]
