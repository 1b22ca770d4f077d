"""Pruning the SQLite audit log: the checkpoint table, and chunked checkpointed deletes.

The cutoff lookup is a read on the reader connection; each chunk runs on the writer's own
thread in one BEGIN IMMEDIATE transaction, the lock every batch of records takes to move
the chain head, so processes sharing the file never interleave a prune with an append.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.state.audit import format_ts, parse_ts
from gateway.state.audit_chain import Checkpoint
from gateway.state.audit_retention import (
    PRUNE_CHUNK_ROWS,
    PruneResult,
    check_prefix,
    checkpoint_of,
)
from skills_registry.store_sqlite import SqliteDatabase, transaction

__all__ = ["CHECKPOINT_SCHEMA", "newest_checkpoint", "prune_sqlite"]

CHECKPOINT_SCHEMA = """
-- One row per prune transaction; the highest seq is the one verification starts from.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY,  -- the last deleted record
    hash TEXT NOT NULL,       -- its hash: the next record's prev_hash
    pruned_at TEXT NOT NULL,
    cutoff TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""


def newest_checkpoint(conn: sqlite3.Connection) -> Checkpoint | None:
    row = conn.execute(
        "SELECT seq, hash, pruned_at, cutoff, deleted, reason FROM audit_checkpoints"
        " ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    seq, hash_, pruned_at, cutoff, deleted, reason = row
    return Checkpoint(seq, hash_, parse_ts(pruned_at), parse_ts(cutoff), deleted, reason)


async def prune_sqlite(
    writer: SqliteDatabase,
    reader: SqliteDatabase,
    cutoff: datetime,
    *,
    reason: str,
    dry_run: bool,
    on_progress: Callable[[int], None] | None,
    chunk_rows: int = PRUNE_CHUNK_ROWS,
) -> PruneResult:
    target = await reader.run(lambda conn: _last_seq_before(conn, cutoff))
    if dry_run:
        deleted, cp_seq, cp_hash = await reader.run(lambda conn: _preview(conn, target))
        return PruneResult(cutoff, True, deleted, 0, cp_seq, cp_hash)
    deleted = chunks = 0
    while target is not None:
        done = await writer.run(lambda conn: _prune_chunk(conn, target, cutoff, reason, chunk_rows))
        if not done:
            break
        deleted, chunks = deleted + done, chunks + 1
        if on_progress is not None:
            on_progress(deleted)
    newest = await reader.run(newest_checkpoint)
    return PruneResult(cutoff, False, deleted, chunks, *checkpoint_of(newest))


def _last_seq_before(conn: sqlite3.Connection, cutoff: datetime) -> int | None:
    row = conn.execute(
        "SELECT max(seq) FROM audit_records WHERE ts < ?", (format_ts(cutoff),)
    ).fetchone()
    return None if row is None else row[0]


def _preview(conn: sqlite3.Connection, target: int | None) -> tuple[int, int | None, str | None]:
    """(records a prune would delete, checkpoint seq and hash it would leave)."""
    newest = newest_checkpoint(conn)
    if target is None or (newest is not None and newest.seq >= target):
        return 0, *checkpoint_of(newest)
    (count,) = conn.execute(
        "SELECT count(*) FROM audit_records WHERE seq <= ?", (target,)
    ).fetchone()
    row = conn.execute("SELECT hash FROM audit_records WHERE seq = ?", (target,)).fetchone()
    return count, target, None if row is None else row[0]


def _prune_chunk(
    conn: sqlite3.Connection, target: int, cutoff: datetime, reason: str, chunk_rows: int
) -> int:
    """Delete the next chunk of the prefix up to `target` and checkpoint it; 0 when done."""
    with transaction(conn):  # BEGIN IMMEDIATE: the chain-head lock the writers take
        newest = newest_checkpoint(conn)
        start = 0 if newest is None else newest.seq
        if start >= target:
            return 0  # another process pruned this far already
        upper = min(target, start + chunk_rows)
        first, count = conn.execute(
            "SELECT min(seq), count(*) FROM audit_records WHERE seq <= ?", (upper,)
        ).fetchone()
        check_prefix(start, upper, first, count)
        (last_hash,) = conn.execute(
            "SELECT hash FROM audit_records WHERE seq = ?", (upper,)
        ).fetchone()
        conn.execute("DELETE FROM audit_records WHERE seq <= ?", (upper,))
        conn.execute(
            "INSERT INTO audit_checkpoints (seq, hash, pruned_at, cutoff, deleted, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (upper, last_hash, format_ts(datetime.now(UTC)), format_ts(cutoff), count, reason),
        )
        return int(count)
