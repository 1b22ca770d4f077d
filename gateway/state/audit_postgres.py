"""The scale-out audit log on PostgreSQL (psycopg 3, async), shared by every replica.

Each batch is one transaction that locks the one-row chain head (SELECT ... FOR UPDATE),
links its records after it, inserts them and moves the head: replicas appending at the same
time queue on that row lock, so the chain stays linear. A writer task behind a bounded queue
does this, so the request path never waits for the database round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from gateway.state.audit import (
    GENESIS_HASH,
    AuditRecord,
    Decision,
    VerifyResult,
    chain_body,
    record_from_json,
)
from gateway.state.audit_chain import ChainVerifier, StoredRow
from gateway.state.audit_prune_postgres import CHECKPOINT_SCHEMA, newest_checkpoint, prune_postgres
from gateway.state.audit_retention import PruneResult
from gateway.state.audit_writer import QueuedAuditWriter, reconcile_retry

__all__ = ["PostgresAuditStore"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS audit_records (
        seq BIGINT PRIMARY KEY,  -- position in the chain, assigned under the head lock
        id TEXT NOT NULL UNIQUE,
        ts TIMESTAMPTZ NOT NULL,
        kind TEXT NOT NULL,
        skill TEXT,
        decision TEXT NOT NULL,
        body TEXT NOT NULL,      -- the exact bytes that were hashed (jsonb would re-encode)
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_records_skill_seq ON audit_records (skill, seq)",
    "CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts)",
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INT PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )""",
    CHECKPOINT_SCHEMA,
)
_COLUMNS = "seq, id, ts, kind, skill, decision, body, hash"
# Replicas starting together would race on CREATE TABLE IF NOT EXISTS (it is not atomic).
_SCHEMA_LOCK_KEY = 0x5357_4155  # "SWAU"


class PostgresAuditStore(QueuedAuditWriter):
    def __init__(self, url: str, *, max_queue: int, batch_size: int, close_timeout: float) -> None:
        super().__init__(max_queue=max_queue, batch_size=batch_size, close_timeout=close_timeout)
        # autocommit: every transaction is an explicit conn.transaction() block.
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True}
        )

    async def open(self) -> None:
        await self._pool.open(wait=True, timeout=10.0)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                for statement in _SCHEMA:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, %s)"
                    " ON CONFLICT (id) DO NOTHING",
                    (GENESIS_HASH,),
                )
        except BaseException:
            await self._pool.close()
            raise
        self._start_writer()

    async def close(self) -> None:
        try:
            await self._stop_writer()
        finally:
            await self._pool.close()

    async def _write_batch(self, batch: Sequence[AuditRecord], retry: bool) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            if retry:
                batch = reconcile_retry(batch, await _stored_bodies(conn, batch))
            cur = await conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
            head_row = await cur.fetchone()
            if head_row is None:
                raise RuntimeError("audit_head row is missing")
            seq, head = head_row
            rows = []
            for record in batch:
                seq += 1
                body, head = chain_body(record, head)
                rows.append(
                    (seq, record.id, record.ts, record.kind, record.skill)
                    + (record.decision, body.decode(), head)
                )
            async with conn.cursor() as insert:
                await insert.executemany(
                    f"INSERT INTO audit_records ({_COLUMNS})"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
            await conn.execute(
                "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", (seq, head)
            )

    async def query(
        self,
        *,
        skill: str | None = None,
        since: datetime | None = None,
        decision: Decision | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        where, args = ["TRUE"], list[Any]()
        if skill is not None:
            where.append("skill = %s")
            args.append(skill)
        if since is not None:
            where.append("ts >= %s")
            args.append(since)
        if decision is not None:
            where.append("decision = %s")
            args.append(decision)
        sql = (
            f"SELECT body, hash FROM audit_records WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT %s"
        )
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, (*args, max(0, limit)))
            rows = await cur.fetchall()
        return [record_from_json(body, hash_) for body, hash_ in reversed(rows)]

    async def verify(self) -> VerifyResult:
        async with self._pool.connection() as conn, conn.transaction():
            # One snapshot for the head, the checkpoint and every row, however long the walk.
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            verifier = ChainVerifier(await newest_checkpoint(conn))
            cur = await conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
            head = await cur.fetchone()
            head_seq, head_hash = head if head is not None else (0, GENESIS_HASH)
            async with conn.cursor(name="audit_verify") as rows:
                rows.itersize = 1000  # stream: never the whole log in memory
                await rows.execute(f"SELECT {_COLUMNS} FROM audit_records ORDER BY seq")
                async for seq, id_, ts, kind, skill, decision, body, hash_ in rows:
                    row = StoredRow(seq, id_, ts, kind, skill, decision, body.encode(), hash_)
                    if not verifier.feed(row):
                        break
        return verifier.result(head_seq, head_hash)

    async def prune(
        self,
        before: datetime,
        *,
        reason: str,
        dry_run: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> PruneResult:
        return await prune_postgres(
            self._pool, before, reason=reason, dry_run=dry_run, on_progress=on_progress
        )


async def _stored_bodies(
    conn: AsyncConnection[Any], batch: Sequence[AuditRecord]
) -> dict[str, str]:
    cur = await conn.execute(
        "SELECT id, body FROM audit_records WHERE id = ANY(%s)", ([r.id for r in batch],)
    )
    return {id_: body for id_, body in await cur.fetchall()}
