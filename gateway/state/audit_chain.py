"""Walks stored audit rows in chain order and finds the first broken link (both backends)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from gateway.state.audit import GENESIS_HASH, VerifyResult, chain_hash, parse_ts

__all__ = ["ChainVerifier", "StoredRow"]


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row as a backend stores it: the indexed columns, the hashed body, the hash."""

    seq: int
    id: str
    ts: datetime
    kind: str
    skill: str | None
    decision: str
    body: bytes
    hash: str


class ChainVerifier:
    """Feed rows in seq order; stop when feed() returns False; then call result(head)."""

    def __init__(self) -> None:
        self.checked = 0
        self._prev_seq = 0
        self._prev_hash = GENESIS_HASH
        self._broken: VerifyResult | None = None

    def feed(self, row: StoredRow) -> bool:
        reason = self._check(row)
        if reason is not None:
            self._broken = VerifyResult(False, self.checked, row.id, reason)
            return False
        self.checked += 1
        self._prev_seq, self._prev_hash = row.seq, row.hash
        return True

    def result(self, head_seq: int, head_hash: str) -> VerifyResult:
        """head_*: what the head table says the last record is; catches deleted tail rows."""
        if self._broken is not None:
            return self._broken
        if (head_seq, head_hash) != (self._prev_seq, self._prev_hash):
            return VerifyResult(
                False,
                self.checked,
                None,
                f"chain head says the log ends at record #{head_seq} ({head_hash[:12]}…) but it"
                f" ends at #{self._prev_seq}: the newest records were deleted or the head altered",
            )
        return VerifyResult(True, self.checked)

    def _check(self, row: StoredRow) -> str | None:
        expected_seq = self._prev_seq + 1
        if row.seq != expected_seq:
            return f"record #{expected_seq} is missing (found #{row.seq} next): rows were deleted"
        try:
            data: Any = orjson.loads(row.body)
        except orjson.JSONDecodeError:
            return "stored record is not valid JSON: it was altered"
        if not isinstance(data, dict) or data.get("prev_hash") != self._prev_hash:
            return "prev_hash does not match the previous record's hash: the chain was cut here"
        if chain_hash(self._prev_hash, row.body) != row.hash:
            return "record content does not match its hash: it was altered"
        return _column_mismatch(row, data)


def _column_mismatch(row: StoredRow, data: dict[str, Any]) -> str | None:
    """Queries filter on the columns, so they must say what the hashed body says."""
    try:
        body_ts = parse_ts(data["ts"])
    except (KeyError, TypeError, ValueError):
        return "hashed record has no valid ts"
    pairs = {
        "id": (row.id, data.get("id")),
        "ts": (row.ts, body_ts),
        "kind": (row.kind, data.get("kind")),
        "skill": (row.skill, data.get("skill")),
        "decision": (row.decision, data.get("decision")),
    }
    for column, (stored, hashed) in pairs.items():
        if stored != hashed:
            return f"column {column!r} ({stored!r}) differs from the hashed record ({hashed!r})"
    return None
