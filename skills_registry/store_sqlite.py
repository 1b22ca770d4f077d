"""The embedded skill store: one SQLite file, WAL mode, driven from one worker thread."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import TypeVar

from skills_registry import serialize
from skills_registry.manifest import SkillVersion
from skills_registry.store import VersionConflict

__all__ = ["SqliteDatabase", "SqliteSkillStore", "sqlite_path", "transaction"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS skill_versions (
    -- AUTOINCREMENT: ids are never reused, so "latest = highest id" holds even after deletes.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    publisher TEXT NOT NULL,
    published_at TEXT NOT NULL,
    data TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE INDEX IF NOT EXISTS skill_versions_name_digest ON skill_versions (name, digest);
"""


def sqlite_path(url: str) -> str:
    """sqlite:///relative.db -> relative.db, sqlite:////abs.db -> /abs.db, sqlite:///:memory:."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a sqlite:/// URL: {url!r}")
    path = url[len(prefix) :].split("?", 1)[0]
    if not path:
        raise ValueError(f"sqlite URL has no path: {url!r}")
    return path


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE takes the write lock up front, so check-then-insert is atomic across
    processes sharing the file (a deferred BEGIN could fail to upgrade and deadlock)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _enable_wal(conn: sqlite3.Connection) -> None:
    # Switching a fresh file to WAL needs an exclusive lock and SQLite does not call the busy
    # handler for it, so two processes opening the same new file at once need a retry here.
    for attempt in range(100):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.02)


class SqliteDatabase:
    """One sqlite3 connection owned by one worker thread: every call runs there, so the event
    loop never blocks and calls from concurrent tasks are serialised without extra locks."""

    def __init__(self, url: str, schema: str) -> None:
        self._path = sqlite_path(url)
        self._schema = schema
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        try:
            await self._submit(self._connect)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._disconnect)
        await asyncio.to_thread(executor.shutdown)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(connection) on the worker thread."""
        return await self._submit(lambda: fn(self._connection()))

    async def _submit(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    def _connect(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves (see transaction()).
        conn = sqlite3.connect(self._path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, much faster
            conn.executescript(self._schema)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class SqliteSkillStore:
    """SkillStore on SQLite; the full SkillVersion lives in `data`, the columns serve lookups."""

    def __init__(self, url: str) -> None:
        self._db = SqliteDatabase(url, _SCHEMA)

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def put_version(self, version: SkillVersion) -> None:
        data = serialize.dumps(version).decode()
        published = version.published_at.astimezone(UTC).isoformat()

        def put(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                row = conn.execute(
                    "SELECT digest FROM skill_versions WHERE name = ? AND version = ?",
                    (version.name, version.version),
                ).fetchone()
                if row is not None:
                    if row[0] != version.digest:
                        raise VersionConflict(f"{version.ref} exists with digest {row[0]}")
                    return  # same content published again: nothing to do
                conn.execute(
                    "INSERT INTO skill_versions"
                    " (name, version, digest, publisher, published_at, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        version.name,
                        version.version,
                        version.digest,
                        version.publisher,
                        published,
                        data,
                    ),
                )

        await self._db.run(put)

    async def get_version(self, name: str, version: str | None = None) -> SkillVersion | None:
        if version is None:
            sql = "SELECT data FROM skill_versions WHERE name = ? ORDER BY id DESC LIMIT 1"
            return await self._one(sql, (name,))
        sql = "SELECT data FROM skill_versions WHERE name = ? AND version = ?"
        return await self._one(sql, (name, version))

    async def find_by_digest(self, name: str, digest: str) -> SkillVersion | None:
        sql = (
            "SELECT data FROM skill_versions WHERE name = ? AND digest = ? ORDER BY id DESC LIMIT 1"
        )
        return await self._one(sql, (name, digest))

    async def list_versions(self, name: str) -> list[SkillVersion]:
        sql = "SELECT data FROM skill_versions WHERE name = ? ORDER BY id"
        return await self._all(sql, (name,))

    async def list_latest(self) -> list[SkillVersion]:
        sql = (
            "SELECT data FROM skill_versions WHERE id IN"
            " (SELECT MAX(id) FROM skill_versions GROUP BY name) ORDER BY name"
        )
        return await self._all(sql, ())

    async def _one(self, sql: str, args: tuple[str, ...]) -> SkillVersion | None:
        row = await self._db.run(lambda conn: conn.execute(sql, args).fetchone())
        return None if row is None else serialize.loads(row[0])

    async def _all(self, sql: str, args: tuple[str, ...]) -> list[SkillVersion]:
        rows = await self._db.run(lambda conn: conn.execute(sql, args).fetchall())
        return [serialize.loads(row[0]) for row in rows]
