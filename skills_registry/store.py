"""The skill store Protocol and the URL-scheme factory that picks a backend."""

from __future__ import annotations

from typing import Protocol

from skills_registry.manifest import SkillVersion


class VersionConflict(Exception):
    """name@version already exists with a different digest."""


class SkillStore(Protocol):
    async def open(self) -> None:
        """Connect and create the schema if needed."""

    async def close(self) -> None: ...

    async def put_version(self, version: SkillVersion) -> None:
        """Store a new version; VersionConflict if name@version exists with another digest."""

    async def get_version(self, name: str, version: str | None = None) -> SkillVersion | None:
        """One version, or the latest published one when version is None."""

    async def find_by_digest(self, name: str, digest: str) -> SkillVersion | None: ...

    async def list_versions(self, name: str) -> list[SkillVersion]:
        """All versions of one skill, oldest first."""

    async def list_latest(self) -> list[SkillVersion]:
        """The latest version of every skill, sorted by name."""


def open_skill_store(url: str) -> SkillStore:
    """sqlite:///path (or sqlite:///:memory:) or postgresql://..."""
    if url.startswith("sqlite:"):
        from skills_registry.store_sqlite import SqliteSkillStore

        return SqliteSkillStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        from skills_registry.store_postgres import PostgresSkillStore

        return PostgresSkillStore(url)
    raise ValueError(f"unsupported storage URL scheme: {url.split(':', 1)[0]!r}")
