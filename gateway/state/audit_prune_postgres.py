"""Pruning the PostgreSQL audit log: the checkpoint table, and chunked checkpointed deletes.

Each chunk is one transaction that first locks the chain head (SELECT ... FOR UPDATE), the
row every replica's writer locks per batch, so a prune and an append never interleave.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from gateway.state.audit_chain import Checkpoint
from gateway.state.audit_retention import (
    PRUNE_CHUNK_ROWS,
    PruneResult,
    check_prefix,
    checkpoint_of,
)

__all__ = ["CHECKPOINT_SCHEMA", "newest_checkpoint", "prune_postgres"]

CHECKPOINT_SCHEMA = """CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq BIGINT PRIMARY KEY,  -- the last deleted record; the highest seq is the newest
    hash TEXT NOT NULL,      -- its hash: the next record's prev_hash
    pruned_at TIMESTAMPTZ NOT NULL,
    cutoff TIMESTAMPTZ NOT NULL,
    deleted BIGINT NOT NULL,
    reason TEXT NOT NULL
)"""

Pool = AsyncConnectionPool[AsyncConnection[Any]]


async def newest_checkpoint(conn: AsyncConnection[Any]) -> Checkpoint | None:
    cur = await conn.execute(
        "SELECT seq, hash, pruned_at, cutoff, deleted, reason FROM audit_checkpoints"
        " ORDER BY seq DESC LIMIT 1"
    )
    row = await cur.fetchone()
    return None if row is None else Checkpoint(*row)


async def prune_postgres(
    pool: Pool,
    cutoff: datetime,
    *,
    reason: str,
    dry_run: bool,
    on_progress: Callable[[int], None] | None,
    chunk_rows: int = PRUNE_CHUNK_ROWS,
) -> PruneResult:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT max(seq) FROM audit_records WHERE ts < %s", (cutoff,))
        row = await cur.fetchone()
        target: int | None = None if row is None else row[0]
        if dry_run:
            deleted, cp_seq, cp_hash = await _preview(conn, target)
            return PruneResult(cutoff, True, deleted, 0, cp_seq, cp_hash)
    deleted = chunks = 0
    while target is not None:
        async with pool.connection() as conn, conn.transaction():
            done = await _prune_chunk(conn, target, cutoff, reason, chunk_rows)
        if not done:
            break
        deleted, chunks = deleted + done, chunks + 1
        if on_progress is not None:
            on_progress(deleted)
    async with pool.connection() as conn:
        newest = await newest_checkpoint(conn)
    return PruneResult(cutoff, False, deleted, chunks, *checkpoint_of(newest))


async def _preview(
    conn: AsyncConnection[Any], target: int | None
) -> tuple[int, int | None, str | None]:
    """(records a prune would delete, checkpoint seq and hash it would leave)."""
    newest = await newest_checkpoint(conn)
    if target is None or (newest is not None and newest.seq >= target):
        return 0, *checkpoint_of(newest)
    cur = await conn.execute(
        "SELECT count(*), max(hash) FILTER (WHERE seq = %s) FROM audit_records WHERE seq <= %s",
        (target, target),
    )
    row = await cur.fetchone()
    count, last_hash = row if row is not None else (0, None)
    return int(count), target, last_hash


async def _prune_chunk(
    conn: AsyncConnection[Any], target: int, cutoff: datetime, reason: str, chunk_rows: int
) -> int:
    """Delete the next chunk of the prefix up to `target` and checkpoint it; 0 when done.
    Runs inside the caller's transaction."""
    await conn.execute("SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE")
    newest = await newest_checkpoint(conn)
    start = 0 if newest is None else newest.seq
    if start >= target:
        return 0  # another replica pruned this far already
    upper = min(target, start + chunk_rows)
    cur = await conn.execute(
        "SELECT min(seq), count(*), max(hash) FILTER (WHERE seq = %s)"
        " FROM audit_records WHERE seq <= %s",
        (upper, upper),
    )
    row = await cur.fetchone()
    first, count, last_hash = row if row is not None else (None, 0, None)
    check_prefix(start, upper, first, count)
    await conn.execute("DELETE FROM audit_records WHERE seq <= %s", (upper,))
    await conn.execute(
        "INSERT INTO audit_checkpoints (seq, hash, pruned_at, cutoff, deleted, reason)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (upper, last_hash, datetime.now(UTC), cutoff, count, reason),
    )
    return int(count)
