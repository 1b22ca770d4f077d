"""Walks stored audit rows in chain order and finds the first broken link (both backends).

After a prune (gateway/state/audit_retention.py) the walk starts from the newest checkpoint,
the seq and hash of the last deleted record, instead of GENESIS_HASH. The checkpoint lives in
the same database as the records: it tells accidental or partial deletion from pruning, it
does not stop someone who can rewrite the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from gateway.state.audit import GENESIS_HASH, VerifyResult, chain_hash, parse_ts

__all__ = ["ChainVerifier", "Checkpoint", "StoredRow"]


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


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One prune: every record up to `seq` was deleted; `hash` was the hash of record #seq."""

    seq: int
    hash: str
    pruned_at: datetime
    cutoff: datetime  # records older than this were due
    deleted: int  # records this prune transaction deleted
    reason: str  # e.g. "audit.retention_days=30" or "skillwarden audit prune"


class ChainVerifier:
    """Feed rows in seq order; stop when feed() returns False; then call result(head).
    checkpoint: the newest one, or None for a log that was never pruned."""

    def __init__(self, checkpoint: Checkpoint | None = None) -> None:
        self.checked = 0
        self._checkpoint = checkpoint
        self._prev_seq = 0 if checkpoint is None else checkpoint.seq
        self._prev_hash = GENESIS_HASH if checkpoint is None else checkpoint.hash
        self._broken: VerifyResult | None = None

    def feed(self, row: StoredRow) -> bool:
        reason = self._check(row)
        if reason is not None:
            self._broken = self._result(False, row.id, reason)
            return False
        self.checked += 1
        self._prev_seq, self._prev_hash = row.seq, row.hash
        return True

    def result(self, head_seq: int, head_hash: str) -> VerifyResult:
        """head_*: what the head table says the last record is; catches deleted tail rows."""
        if self._broken is not None:
            return self._broken
        if (head_seq, head_hash) != (self._prev_seq, self._prev_hash):
            return self._result(
                False,
                None,
                f"chain head says the log ends at record #{head_seq} ({head_hash[:12]}…) but it"
                f" ends at #{self._prev_seq}: the newest records were deleted or the head altered",
            )
        return self._result(True, None, None)

    def _result(self, ok: bool, broken_id: str | None, reason: str | None) -> VerifyResult:
        cp = self._checkpoint
        return VerifyResult(
            ok,
            self.checked,
            broken_id,
            reason,
            checkpoint_seq=None if cp is None else cp.seq,
            pruned_at=None if cp is None else cp.pruned_at,
        )

    def _check(self, row: StoredRow) -> str | None:
        expected_seq = self._prev_seq + 1
        cp = self._checkpoint
        if cp is not None and row.seq <= cp.seq:
            # Pruning deletes everything up to the checkpoint in the same transaction: a
            # survivor means the checkpoint was written by hand, to skip records behind it.
            return (
                f"record #{row.seq} is still stored but the checkpoint at #{cp.seq} says it"
                " was pruned: the checkpoint does not match the log"
            )
        if row.seq != expected_seq:
            if self.checked == 0 and cp is not None:
                return (
                    f"the checkpoint at #{cp.seq} must be followed by record #{expected_seq},"
                    f" found #{row.seq}: rows after the checkpoint were deleted"
                )
            return f"record #{expected_seq} is missing (found #{row.seq} next): rows were deleted"
        try:
            data: Any = orjson.loads(row.body)
        except orjson.JSONDecodeError:
            return "stored record is not valid JSON: it was altered"
        if not isinstance(data, dict) or data.get("prev_hash") != self._prev_hash:
            if self.checked == 0 and cp is not None:
                return (
                    f"prev_hash does not match the hash of the checkpoint at #{cp.seq}:"
                    " the checkpoint does not match the log"
                )
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
