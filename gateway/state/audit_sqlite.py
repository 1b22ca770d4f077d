"""The embedded audit log: SQLite in WAL mode, written by one writer task through one thread.

The writer thread owns its own connection, so the event loop never touches the file; reads
use a second connection on a second thread (WAL lets them run beside the writer). Each batch
is one BEGIN IMMEDIATE transaction that reads the chain head, links the records and moves the
head, so several processes sharing the file (uvicorn --workers) still build one chain.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from gateway.state.audit import (
    GENESIS_HASH,
    AuditRecord,
    Decision,
    VerifyResult,
    chain_body,
    format_ts,
    parse_ts,
    record_from_json,
)
from gateway.state.audit_chain import ChainVerifier, StoredRow
from gateway.state.audit_prune_sqlite import CHECKPOINT_SCHEMA, newest_checkpoint, prune_sqlite
from gateway.state.audit_retention import PruneResult
from gateway.state.audit_writer import QueuedAuditWriter, reconcile_retry
from skills_registry.store_sqlite import SqliteDatabase, sqlite_path, transaction

__all__ = ["SqliteAuditStore"]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_records (
    seq INTEGER PRIMARY KEY,  -- position in the chain, assigned under the write lock
    id TEXT NOT NULL UNIQUE,
    ts TEXT NOT NULL,         -- format_ts(): sorts chronologically as text
    kind TEXT NOT NULL,
    skill TEXT,
    decision TEXT NOT NULL,
    body TEXT NOT NULL,       -- the exact bytes that were hashed
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_skill_seq ON audit_records (skill, seq);
CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts);
-- One row: the last record's seq and hash. Deleting the newest rows leaves it ahead.
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}');
{CHECKPOINT_SCHEMA}"""

_COLUMNS = "seq, id, ts, kind, skill, decision, body, hash"
_Row = tuple[int, str, str, str, str | None, str, str, str]
_VERIFY_CHUNK = 1000
# One multi-row INSERT per chunk, not executemany(): Python's sqlite3 releases the GIL around
# every sqlite3_step, so executemany() made the writer thread and the event loop trade the GIL
# twice per record (2.5 context switches per request, ~60 us of gateway CPU per request under
# load; bench/gateway_bench.py). 100 rows x 8 columns stays under SQLite's oldest
# variable limit (999).
_ROWS_PER_INSERT = 100
_ROW_VALUES = "(" + ",".join("?" * 8) + ")"


class SqliteAuditStore(QueuedAuditWriter):
    def __init__(self, url: str, *, max_queue: int, batch_size: int, close_timeout: float) -> None:
        super().__init__(max_queue=max_queue, batch_size=batch_size, close_timeout=close_timeout)
        self._writer_db = SqliteDatabase(url, _SCHEMA)
        # A second :memory: connection would be a different database: share the writer's.
        in_memory = sqlite_path(url) == ":memory:"
        self._reader_db = self._writer_db if in_memory else SqliteDatabase(url, "")

    async def open(self) -> None:
        await self._writer_db.open()  # creates the schema before the reader looks
        await self._reader_db.open()
        self._start_writer()

    async def close(self) -> None:
        try:
            await self._stop_writer()
        finally:
            await self._writer_db.close()
            await self._reader_db.close()

    async def _write_batch(self, batch: Sequence[AuditRecord], retry: bool) -> None:
        await self._writer_db.run(lambda conn: _write(conn, batch, retry))

    async def query(
        self,
        *,
        skill: str | None = None,
        since: datetime | None = None,
        decision: Decision | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        where, args = ["1 = 1"], []
        if skill is not None:
            where.append("skill = ?")
            args.append(skill)
        if since is not None:
            where.append("ts >= ?")
            args.append(format_ts(since))
        if decision is not None:
            where.append("decision = ?")
            args.append(decision)
        sql = (
            f"SELECT body, hash FROM audit_records WHERE {' AND '.join(where)}"
            " ORDER BY seq DESC LIMIT ?"
        )
        params = (*args, max(0, limit))
        rows = await self._reader_db.run(lambda conn: conn.execute(sql, params).fetchall())
        return [record_from_json(body, hash_) for body, hash_ in reversed(rows)]

    async def verify(self) -> VerifyResult:
        return await self._reader_db.run(_verify)

    async def prune(
        self,
        before: datetime,
        *,
        reason: str,
        dry_run: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> PruneResult:
        return await prune_sqlite(
            self._writer_db,
            self._reader_db,
            before,
            reason=reason,
            dry_run=dry_run,
            on_progress=on_progress,
        )


def _write(conn: sqlite3.Connection, batch: Sequence[AuditRecord], retry: bool) -> None:
    with transaction(conn):  # BEGIN IMMEDIATE: the write lock is the chain-head lock
        if retry:
            batch = reconcile_retry(batch, _stored_bodies(conn, batch))
        seq, head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        rows = []
        for record in batch:
            seq += 1
            body, head = chain_body(record, head)
            rows.append(
                (seq, record.id, format_ts(record.ts), record.kind, record.skill)
                + (record.decision, body.decode(), head)
            )
        for start in range(0, len(rows), _ROWS_PER_INSERT):
            chunk = rows[start : start + _ROWS_PER_INSERT]
            conn.execute(_insert_sql(len(chunk)), [value for row in chunk for value in row])
        conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, head))


@functools.cache
def _insert_sql(rows: int) -> str:
    return f"INSERT INTO audit_records ({_COLUMNS}) VALUES " + ",".join([_ROW_VALUES] * rows)


def _stored_bodies(conn: sqlite3.Connection, batch: Sequence[AuditRecord]) -> dict[str, str]:
    sql = "SELECT body FROM audit_records WHERE id = ?"
    found = {r.id: conn.execute(sql, (r.id,)).fetchone() for r in batch}
    return {id_: row[0] for id_, row in found.items() if row is not None}


def _verify(conn: sqlite3.Connection) -> VerifyResult:
    # One read transaction: the head, the checkpoint and the rows from the same snapshot.
    conn.execute("BEGIN")
    try:
        verifier = ChainVerifier(newest_checkpoint(conn))
        head_seq, head_hash = conn.execute(
            "SELECT seq, hash FROM audit_head WHERE id = 1"
        ).fetchone()
        last = 0
        while True:
            rows: list[_Row] = conn.execute(
                f"SELECT {_COLUMNS} FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?",
                (last, _VERIFY_CHUNK),
            ).fetchall()
            for row in rows:
                if not verifier.feed(_stored_row(row)):
                    return verifier.result(head_seq, head_hash)
            if len(rows) < _VERIFY_CHUNK:
                return verifier.result(head_seq, head_hash)
            last = rows[-1][0]
    finally:
        conn.rollback()


def _stored_row(row: _Row) -> StoredRow:
    seq, id_, ts, kind, skill, decision, body, hash_ = row
    try:
        when = parse_ts(ts)
    except ValueError:
        when = datetime.min  # a mangled column: the verifier reports the mismatch
    return StoredRow(seq, id_, when, kind, skill, decision, body.encode(), hash_)
