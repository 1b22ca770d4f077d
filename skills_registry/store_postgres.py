"""The scale-out skill store: PostgreSQL through a small psycopg 3 async connection pool."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from skills_registry import serialize
from skills_registry.manifest import SkillVersion
from skills_registry.store import VersionConflict

__all__ = ["Pool", "PooledStore", "PostgresSkillStore", "open_pool"]

Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]

# Unqualified names on purpose: the connection's search_path picks the schema.
# `data` is JSON, not JSONB: JSONB refuses "\u0000", which a skill body may legally contain,
# and every column we query on has its own typed column anyway.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS skill_versions (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    publisher TEXT NOT NULL,
    published_at TIMESTAMPTZ NOT NULL,
    data JSON NOT NULL,
    UNIQUE (name, version)
);
CREATE INDEX IF NOT EXISTS skill_versions_name_digest ON skill_versions (name, digest);
"""


async def open_pool(url: str, schema: str, *, max_size: int = 4) -> Pool:
    """Open a small autocommit pool (writes use explicit transactions) and create the schema.

    CREATE TABLE IF NOT EXISTS is not safe when two processes run it at the same moment (both
    see no table, one fails on the catalog's unique index), so schema creation takes a
    transaction-scoped advisory lock first."""
    pool: Pool = AsyncConnectionPool(
        url, min_size=1, max_size=max_size, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True, timeout=10.0)
    try:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('skillwarden.schema'))")
            for statement in schema.split(";"):
                if statement.strip():
                    await conn.execute(statement)
    except BaseException:
        await pool.close()
        raise
    return pool


class PooledStore:
    """open/close/_opened for a store that owns one pool and creates `schema` on open."""

    schema = ""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: Pool | None = None

    async def open(self) -> None:
        if self._pool is None:
            self._pool = await open_pool(self._url, self.schema)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _opened(self) -> Pool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool


class PostgresSkillStore(PooledStore):
    """SkillStore on PostgreSQL; the whole SkillVersion is in `data`, the columns serve lookups."""

    schema = _SCHEMA

    async def put_version(self, version: SkillVersion) -> None:
        data = serialize.dumps(version).decode()
        async with self._opened().connection() as conn, conn.transaction():
            # ON CONFLICT waits for a concurrent insert of the same name@version to commit,
            # so the SELECT below always sees the winner (READ COMMITTED, new snapshot).
            cur = await conn.execute(
                "INSERT INTO skill_versions"
                " (name, version, digest, publisher, published_at, data)"
                " VALUES (%s, %s, %s, %s, %s, %s::json)"
                " ON CONFLICT (name, version) DO NOTHING RETURNING id",
                (
                    version.name,
                    version.version,
                    version.digest,
                    version.publisher,
                    version.published_at,
                    data,
                ),
            )
            if await cur.fetchone() is not None:
                return
            cur = await conn.execute(
                "SELECT digest FROM skill_versions WHERE name = %s AND version = %s",
                (version.name, version.version),
            )
            row = await cur.fetchone()
            if row is None:  # only possible if someone deletes rows behind our back
                raise RuntimeError(f"{version.ref} vanished during put_version")
            if row[0] != version.digest:
                raise VersionConflict(f"{version.ref} exists with digest {row[0]}")

    async def get_version(self, name: str, version: str | None = None) -> SkillVersion | None:
        if version is None:
            sql = "SELECT data::text FROM skill_versions WHERE name = %s ORDER BY id DESC LIMIT 1"
            return await self._one(sql, (name,))
        sql = "SELECT data::text FROM skill_versions WHERE name = %s AND version = %s"
        return await self._one(sql, (name, version))

    async def find_by_digest(self, name: str, digest: str) -> SkillVersion | None:
        sql = (
            "SELECT data::text FROM skill_versions WHERE name = %s AND digest = %s"
            " ORDER BY id DESC LIMIT 1"
        )
        return await self._one(sql, (name, digest))

    async def list_versions(self, name: str) -> list[SkillVersion]:
        sql = "SELECT data::text FROM skill_versions WHERE name = %s ORDER BY id"
        return await self._all(sql, (name,))

    async def list_latest(self) -> list[SkillVersion]:
        # COLLATE "C": code-point order, the same as SQLite's, whatever the database locale.
        sql = (
            "SELECT data::text FROM skill_versions WHERE id IN"
            ' (SELECT MAX(id) FROM skill_versions GROUP BY name) ORDER BY name COLLATE "C"'
        )
        return await self._all(sql, ())

    async def _one(self, sql: str, args: tuple[Any, ...]) -> SkillVersion | None:
        async with self._opened().connection() as conn:
            cur = await conn.execute(sql, args)
            row = await cur.fetchone()
        return None if row is None else serialize.loads(row[0])

    async def _all(self, sql: str, args: tuple[Any, ...]) -> list[SkillVersion]:
        async with self._opened().connection() as conn:
            cur = await conn.execute(sql, args)
            rows = await cur.fetchall()
        return [serialize.loads(row[0]) for row in rows]
