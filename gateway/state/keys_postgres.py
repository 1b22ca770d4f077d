"""API keys in PostgreSQL, sharing the skill store's pool and schema-creation lock."""

from __future__ import annotations

import builtins
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
from skills_registry.store_postgres import PooledStore

__all__ = ["PostgresKeyStore"]

# Unqualified name on purpose: the connection's search_path picks the schema.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    key_hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('admin', 'agent')),
    consumer TEXT NOT NULL,
    skills JSON,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
"""

_COLUMNS = "id, kind, consumer, skills::text, created_at, revoked_at, key_hash"


def _record(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(
        id=row[0],
        kind=cast(KeyKind, row[1]),
        consumer=row[2],
        skills=skills_from_json(row[3]),
        created_at=row[4],
        revoked_at=row[5],
    )


class PostgresKeyStore(PooledStore):
    """ApiKeyStore on PostgreSQL."""

    schema = _SCHEMA

    async def create(
        self, kind: KeyKind, consumer: str, skills: tuple[str, ...] | None
    ) -> tuple[ApiKey, str]:
        check_new_key(kind, consumer, skills)
        plaintext = new_key()
        record = ApiKey(new_key_id(), kind, consumer, skills, datetime.now(UTC))
        async with self._opened().connection() as conn:
            await conn.execute(
                "INSERT INTO api_keys (id, key_hash, kind, consumer, skills, created_at)"
                " VALUES (%s, %s, %s, %s, %s::json, %s)",
                (
                    record.id,
                    hash_key(plaintext),
                    kind,
                    consumer,
                    skills_to_json(skills),
                    record.created_at,
                ),
            )
        return record, plaintext

    async def verify(self, plaintext: str) -> ApiKey | None:
        if not is_key_format(plaintext):
            return None
        computed = hash_key(plaintext)
        row = await self._fetchone(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = %s", (computed,)
        )
        if row is None or not hash_matches(row[6], computed) or row[5] is not None:
            return None
        return _record(row)

    async def list(self) -> builtins.list[ApiKey]:
        async with self._opened().connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY seq")
            rows = await cur.fetchall()
        return [_record(row) for row in rows]

    async def count(self, kind: KeyKind) -> int:
        row = await self._fetchone(
            "SELECT COUNT(*) FROM api_keys WHERE kind = %s AND revoked_at IS NULL", (kind,)
        )
        return 0 if row is None else int(row[0])

    async def revoke(self, key_id: str) -> bool:
        async with self._opened().connection() as conn:
            cur = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
                (key_id,),
            )
            return cur.rowcount == 1

    async def _fetchone(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        async with self._opened().connection() as conn:
            cur = await conn.execute(sql, args)
            return await cur.fetchone()
