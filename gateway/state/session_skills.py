"""Which skill the LLM path bound on each Claude Code session, for the tool-call check.

The PreToolUse hook sees the session id but not the conversation, so it cannot tell which
skill the model switched to with the `Skill` tool. The proxy can: bind_skill records its
binding here, keyed by (consumer, session id), and POST /v1/tool-calls/check reads it back
for the same consumer only (an agent key never reaches another consumer's sessions).

Per process and bounded: least recently recorded entries leave first, and an entry older than
the TTL is treated as absent. With several replicas a check may reach one that has not seen
the session; it then binds as if no session were known (the no_skill policy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_ENTRIES", "DEFAULT_TTL_S", "SessionSkill", "SessionSkills"]

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_TTL_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class SessionSkill:
    """The skill a session's latest tool-offering request was bound to, and how."""

    ref: str  # name@version: the exact version the LLM path enforced
    bound_by: str  # skill_tool_call | header | no_skill_baseline
    recorded: float  # the clock's reading when it was recorded


class SessionSkills:
    """(consumer, session id) -> SessionSkill, LRU-bounded, entries expire after ttl_s."""

    def __init__(
        self,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        # A dict keeps insertion order: re-inserting on record makes it least-recently-recorded
        # first, so the oldest entry is next(iter(...)).
        self._entries: dict[tuple[str, str], SessionSkill] = {}

    def record(self, consumer: str, session_id: str, ref: str, bound_by: str) -> None:
        """Remember a binding (on the request path: a few dict operations, nothing more)."""
        key = (consumer, session_id)
        entries = self._entries
        entries.pop(key, None)
        entries[key] = SessionSkill(ref, bound_by, self._clock())
        if len(entries) > self._max:
            del entries[next(iter(entries))]

    def forget(self, consumer: str, session_id: str) -> None:
        """Drop a binding (the session's latest request could not be bound)."""
        self._entries.pop((consumer, session_id), None)

    def lookup(self, consumer: str, session_id: str) -> SessionSkill | None:
        """This consumer's binding of the session, or None (unknown, evicted or expired)."""
        key = (consumer, session_id)
        found = self._entries.get(key)
        if found is None:
            return None
        if self._clock() - found.recorded >= self._ttl:
            del self._entries[key]
            return None
        return found

    def __len__(self) -> int:
        return len(self._entries)
