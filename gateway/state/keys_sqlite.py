"""API keys in SQLite, sharing the skill store's one-thread connection handling."""

from __future__ import annotations

import builtins
import sqlite3
from datetime import UTC, datetime
from typing import Any, cast

from gateway.state.keys import (
    ApiKey,
    KeyKind,
    check_new_key,
    hash_key,
    hash_matches,
    is_key_format,
    new_key,
    new_key_id,
    skills_from_json,
    skills_to_json,
)
from skills_registry.store_sqlite import SqliteDatabase, transaction

__all__ = ["SqliteKeyStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- creation order for list()
    id TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,  -- sha256 hex of the key; the key itself is never stored
    kind TEXT NOT NULL CHECK (kind IN ('admin', 'agent')),
    consumer TEXT NOT NULL,
    skills TEXT,  -- JSON array of skill names; NULL: every skill
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""

_COLUMNS = "id, kind, consumer, skills, created_at, revoked_at, key_hash"


def _record(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        id=row[0],
        kind=cast(KeyKind, row[1]),
        consumer=row[2],
        skills=skills_from_json(row[3]),
        created_at=datetime.fromisoformat(row[4]),
        revoked_at=None if row[5] is None else datetime.fromisoformat(row[5]),
    )


class SqliteKeyStore:
    """ApiKeyStore on SQLite."""

    def __init__(self, url: str) -> None:
        self._db = SqliteDatabase(url, _SCHEMA)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def create(
        self, kind: KeyKind, consumer: str, skills: tuple[str, ...] | None
    ) -> tuple[ApiKey, str]:
        check_new_key(kind, consumer, skills)
        plaintext = new_key()
        record = ApiKey(new_key_id(), kind, consumer, skills, datetime.now(UTC))
        args = (
            record.id,
            hash_key(plaintext),
            kind,
            consumer,
            skills_to_json(skills),
            record.created_at.isoformat(),
        )

        def insert(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(
                    "INSERT INTO api_keys (id, key_hash, kind, consumer, skills, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    args,
                )

        await self._db.run(insert)
        return record, plaintext

    async def verify(self, plaintext: str) -> ApiKey | None:
        if not is_key_format(plaintext):
            return None
        computed = hash_key(plaintext)
        sql = f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ?"
        row = await self._db.run(lambda conn: conn.execute(sql, (computed,)).fetchone())
        if row is None or not hash_matches(row[6], computed) or row[5] is not None:
            return None
        return _record(row)

    async def list(self) -> builtins.list[ApiKey]:
        sql = f"SELECT {_COLUMNS} FROM api_keys ORDER BY seq"
        rows = await self._db.run(lambda conn: conn.execute(sql).fetchall())
        return [_record(row) for row in rows]

    async def count(self, kind: KeyKind) -> int:
        sql = "SELECT COUNT(*) FROM api_keys WHERE kind = ? AND revoked_at IS NULL"
        row = await self._db.run(lambda conn: conn.execute(sql, (kind,)).fetchone())
        return int(row[0])

    async def revoke(self, key_id: str) -> bool:
        revoked_at = datetime.now(UTC).isoformat()

        def update(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                cur = conn.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    (revoked_at, key_id),
                )
                return cur.rowcount == 1

        return await self._db.run(update)
