"""Tools arrays seen before, so a body that repeats one is parsed without it.

Claude Code sends the same `tools` array on every turn: 63 KB of its 78 KB turn-1 body.
Parsing it, checking it for duplicate keys (a fresh serialisation, which must first encode
every non-ASCII string to UTF-8) and freeing it again was about a fifth of the gateway's CPU
on such a request. KnownTools keeps arrays it has verified (their exact bytes, and one parsed
copy) and, when a body holds one byte for byte after a `"tools":` key, hands back the body
with that array replaced by a placeholder string, to be parsed and checked on its own.

Why the substitution cannot change what the gateway judges:
- The remembered bytes are orjson's own serialisation of a parsed array, so they are one
  complete JSON value with no duplicate keys. They start with `[{"`: unescaped quotes, so a
  match is never inside a string; it is the value of some `"tools"` key, at some depth.
- The placeholder holds a per-process random token, and a body already holding it gets no
  shortcut. The caller uses the cached array only when the parsed top-level `tools` is
  exactly the placeholder; a match at another depth, or a second `tools` key, leaves
  something else there, and the caller parses the whole body as usual.
- The parsed copy is shared by every request that matches it: callers must not mutate it
  (the pipeline builds new lists when it filters tools).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["KnownTools"]

_KEY = b'"tools":['
_FINGERPRINT = 64  # bytes of the array after its '[' that index it
_MAX_MATCHES_TRIED = 4  # `"tools":[` occurrences looked at per body (nested ones come first)


class KnownTools:
    """A small LRU of verified tools arrays, indexed by their first bytes."""

    def __init__(
        self,
        *,
        max_entries: int = 8,
        min_bytes: int = 4096,
        attempt_every_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_entries
        self._min = min_bytes  # smaller arrays cost less to parse than to look up
        self._entries: OrderedDict[bytes, tuple[bytes, list[Any]]] = OrderedDict()
        # remember() serialises and copies the array (~100 us for Claude Code's): a client
        # whose big tools array changes on every request must not pay that every time.
        self._attempt_every_s = attempt_every_s
        self._clock = clock
        self._next_attempt = 0.0
        self.placeholder = "\x00skillwarden-known-tools-" + secrets.token_hex(16)
        self._placeholder_json = orjson.dumps(self.placeholder)

    def split(self, raw: bytes) -> tuple[bytes, list[Any]] | None:
        """(raw with a known array replaced by the placeholder, that array parsed), or None."""
        if not self._entries or len(raw) < self._min:
            return None
        at = raw.find(_KEY)
        for _ in range(_MAX_MATCHES_TRIED):
            if at < 0:
                return None
            start = at + len(_KEY) - 1  # the array's '['
            fingerprint = raw[start + 1 : start + 1 + _FINGERPRINT]
            entry = self._entries.get(fingerprint)
            if entry is not None and raw.startswith(entry[0], start):
                self._entries.move_to_end(fingerprint)
                rest = raw[:start] + self._placeholder_json + raw[start + len(entry[0]) :]
                if rest.count(self._placeholder_json) != 1:
                    return None  # the client sent the token itself: no shortcut
                return rest, entry[1]
            at = raw.find(_KEY, start)
        return None

    def remember(self, raw: bytes, tools: object) -> None:
        """Keep `tools`, the parsed top-level array of raw, a body already checked for
        duplicate keys and found byte for byte in orjson's form (so the array's
        serialisation is in it); later bodies repeating the array skip it."""
        if not isinstance(tools, list) or len(raw) < self._min:
            return
        now = self._clock()
        if now < self._next_attempt:
            return
        self._next_attempt = now + self._attempt_every_s
        try:
            segment = orjson.dumps(tools)
        except orjson.JSONEncodeError:
            return
        if len(segment) < self._min:
            return
        fingerprint = segment[1 : 1 + _FINGERPRINT]
        if fingerprint in self._entries:
            return  # the same start, other content: keep the first, stay simple
        self._entries[fingerprint] = (segment, orjson.loads(segment))  # a copy no request holds
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)
