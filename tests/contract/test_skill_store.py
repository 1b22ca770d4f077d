"""The SkillStore contract, run once on SQLite and once on PostgreSQL (the store_url fixture)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from skills_registry.manifest import Manifest, SkillVersion
from skills_registry.store import SkillStore, VersionConflict, open_skill_store
from skills_registry.store_sqlite import SqliteSkillStore, sqlite_path

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make(
    name: str = "code-review",
    version: str = "1.0.0",
    digest: str | None = None,
    **changes: object,
) -> SkillVersion:
    """A SkillVersion with every field set to something non-default."""
    manifest = Manifest(
        name=name,
        description=f"Reviews code ({name})",
        license="Apache-2.0",
        compatibility="claude-code>=1.0",
        metadata={"author": "ops", "team": "platform"},
        allowed_tools=("Read(./src/**)", "Bash(git diff:*)"),
        body="# Review\n\nLook carefully.\n",
    )
    fields: dict[str, object] = {
        "name": name,
        "version": version,
        "digest": digest or f"sha256:{name}-{version}",
        "publisher": "alice",
        "published_at": T0,
        "manifest": manifest,
        "policy": (
            (f"{name}@{version}", "Read", "path", "./src/**"),
            (f"{name}@{version}", "Bash", "prefix", "git diff"),
        ),
        "warnings": ("allowed-tools grants Bash",),
        "files": ("SKILL.md", "scripts/check.sh"),
    }
    fields.update(changes)
    return SkillVersion(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SkillStore]:
    s = open_skill_store(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_empty_store(store: SkillStore) -> None:
    assert await store.get_version("nope") is None
    assert await store.get_version("nope", "1.0.0") is None
    assert await store.find_by_digest("nope", "sha256:x") is None
    assert await store.list_versions("nope") == []
    assert await store.list_latest() == []


async def test_put_then_get_exact_and_latest(store: SkillStore) -> None:
    v1 = make(version="1.0.0")
    await store.put_version(v1)
    assert await store.get_version("code-review", "1.0.0") == v1
    assert await store.get_version("code-review") == v1
    assert await store.get_version("code-review", "2.0.0") is None
    assert await store.get_version("other") is None


async def test_latest_is_the_last_published_not_the_highest_version_string(
    store: SkillStore,
) -> None:
    # Publication order decides, so "1.10.0" then "1.9.0" makes "1.9.0" latest.
    versions = [make(version=v) for v in ("1.10.0", "2.0.0", "1.9.0")]
    for v in versions:
        await store.put_version(v)
    assert await store.get_version("code-review") == versions[-1]
    assert await store.list_versions("code-review") == versions


async def test_list_latest_across_skills_sorted_by_name(store: SkillStore) -> None:
    await store.put_version(make("pdf-processing", "1.0.0"))
    await store.put_version(make("code-review", "1.0.0"))
    await store.put_version(make("data-analysis", "0.1.0"))
    await store.put_version(make("code-review", "1.1.0"))
    await store.put_version(make("Zeta", "1.0.0"))
    await store.put_version(make("pdf-processing", "1.0.1"))
    latest = await store.list_latest()
    # Code-point order on every backend (an upper-case name sorts before lower-case ones).
    assert [v.ref for v in latest] == [
        "Zeta@1.0.0",
        "code-review@1.1.0",
        "data-analysis@0.1.0",
        "pdf-processing@1.0.1",
    ]
    assert latest[1] == make("code-review", "1.1.0")


async def test_list_versions_is_per_skill(store: SkillStore) -> None:
    await store.put_version(make("a", "1"))
    await store.put_version(make("b", "1"))
    await store.put_version(make("a", "2"))
    assert [v.ref for v in await store.list_versions("a")] == ["a@1", "a@2"]
    assert [v.ref for v in await store.list_versions("b")] == ["b@1"]


async def test_find_by_digest(store: SkillStore) -> None:
    v1 = make(version="1.0.0", digest="sha256:aaa")
    v2 = make(version="1.1.0", digest="sha256:bbb")
    await store.put_version(v1)
    await store.put_version(v2)
    assert await store.find_by_digest("code-review", "sha256:aaa") == v1
    assert await store.find_by_digest("code-review", "sha256:bbb") == v2
    assert await store.find_by_digest("code-review", "sha256:ccc") is None
    # The digest is looked up within the named skill only.
    assert await store.find_by_digest("other", "sha256:aaa") is None


async def test_same_version_other_digest_conflicts_and_keeps_the_original(
    store: SkillStore,
) -> None:
    original = make(digest="sha256:one")
    await store.put_version(original)
    with pytest.raises(VersionConflict):
        await store.put_version(make(digest="sha256:two", publisher="mallory"))
    assert await store.get_version("code-review", "1.0.0") == original
    assert await store.list_versions("code-review") == [original]


async def test_same_version_same_digest_is_a_no_op(store: SkillStore) -> None:
    original = make(digest="sha256:one")
    await store.put_version(original)
    await store.put_version(make("code-review", "2.0.0"))
    # Re-publishing 1.0.0 must neither duplicate it nor make it the latest again.
    await store.put_version(make(digest="sha256:one", publisher="bob"))
    assert [v.ref for v in await store.list_versions("code-review")] == [
        "code-review@1.0.0",
        "code-review@2.0.0",
    ]
    assert await store.get_version("code-review", "1.0.0") == original
    latest = await store.get_version("code-review")
    assert latest is not None and latest.version == "2.0.0"


@pytest.mark.parametrize(
    "published_at",
    [
        T0,
        datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(1999, 1, 1, tzinfo=timezone(timedelta(hours=-8))),
    ],
)
async def test_round_trip_of_every_field(store: SkillStore, published_at: datetime) -> None:
    manifest = Manifest(
        name="ünïcode-skill",
        description="Résumé 文档 🚀 with \"quotes\", 'apostrophes', back\\slash and\nnewline",
        license=None,
        compatibility=None,
        metadata={"clé": "värde", "emoji": "🔒", "empty": ""},
        allowed_tools=(),
        body="line 1\r\nline 2\t\u2028\u0000end",
    )
    v = make(
        "ünïcode-skill",
        "1.0.0-β",
        publisher="José 🛡",
        published_at=published_at,
        manifest=manifest,
        policy=(("ünïcode-skill@1.0.0-β", "WebFetch", "domain", "例え.jp"),),
        warnings=("⚠ one", "two, with, commas", ""),
        files=(),
    )
    await store.put_version(v)
    got = await store.get_version("ünïcode-skill", "1.0.0-β")
    assert got == v
    assert got is not None
    assert got.published_at.utcoffset() == published_at.utcoffset()
    assert isinstance(got.policy, tuple) and isinstance(got.policy[0], tuple)
    assert isinstance(got.warnings, tuple) and isinstance(got.files, tuple)
    assert got.manifest.allowed_tools == ()
    assert got.manifest.license is None


async def test_allowed_tools_absent_stays_none(store: SkillStore) -> None:
    base = make()
    v = make(manifest=Manifest(name=base.name, description="d"), policy=(), warnings=())
    await store.put_version(v)
    got = await store.get_version(v.name, v.version)
    assert got == v
    assert got is not None and got.manifest.allowed_tools is None


async def test_naive_datetime_is_refused(store: SkillStore) -> None:
    with pytest.raises(ValueError, match="timezone"):
        await store.put_version(make(published_at=datetime(2025, 1, 1)))
    assert await store.list_latest() == []


async def test_reopen_after_close_keeps_everything(store_url: str) -> None:
    first = open_skill_store(store_url)
    await first.open()
    await first.put_version(make(version="1.0.0"))
    await first.put_version(make(version="1.1.0"))
    await first.close()

    second = open_skill_store(store_url)
    await second.open()  # the schema already exists: open() must be idempotent
    try:
        assert [v.ref for v in await second.list_versions("code-review")] == [
            "code-review@1.0.0",
            "code-review@1.1.0",
        ]
        assert await second.get_version("code-review") == make(version="1.1.0")
        await second.put_version(make(version="1.2.0"))
        latest = await second.get_version("code-review")
        assert latest is not None and latest.version == "1.2.0"
    finally:
        await second.close()


async def test_many_stores_open_concurrently_on_one_database(store_url: str) -> None:
    # Like several gateway replicas starting at once against a fresh database.
    stores = [open_skill_store(store_url) for _ in range(8)]
    opened = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
    try:
        assert opened == [None] * len(stores)
        a, b = stores[0], stores[-1]
        await a.put_version(make(version="1.0.0"))
        assert await b.get_version("code-review") == make(version="1.0.0")
        with pytest.raises(VersionConflict):
            await b.put_version(make(version="1.0.0", digest="sha256:other"))
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_concurrent_puts_do_not_corrupt(store: SkillStore) -> None:
    skills = [f"skill-{i:02d}" for i in range(8)]
    versions = [make(s, f"1.{n}.0") for s in skills for n in range(5)]
    await asyncio.gather(*(store.put_version(v) for v in versions))
    latest = await store.list_latest()
    assert [v.name for v in latest] == skills
    for s in skills:
        listed = await store.list_versions(s)
        assert sorted(v.version for v in listed) == [f"1.{n}.0" for n in range(5)]
        assert all(v in versions for v in listed)


async def test_concurrent_conflicting_puts_store_exactly_one(store: SkillStore) -> None:
    contenders = [make(digest=f"sha256:{i}") for i in range(10)]
    results = await asyncio.gather(
        *(store.put_version(v) for v in contenders), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, VersionConflict) for r in results if r is not None)
    stored = await store.list_versions("code-review")
    assert len(stored) == 1 and stored[0] in contenders


async def test_concurrent_identical_puts_store_one(store: SkillStore) -> None:
    v = make()
    await asyncio.gather(*(store.put_version(v) for _ in range(10)))
    assert await store.list_versions("code-review") == [v]


async def test_use_before_open_is_an_error(store_url: str) -> None:
    s = open_skill_store(store_url)
    with pytest.raises(RuntimeError):
        await s.get_version("x")


# SQLite-only details: URL forms and the file on disk.


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:///data/sub/sw.db", "data/sub/sw.db"),
        ("sqlite:////abs/path.db", "/abs/path.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_url_forms(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "postgresql://x/y", "sqlite:rel.db"])
def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(ValueError):
        sqlite_path(url)


async def test_sqlite_creates_parent_directories_and_uses_wal(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "er" / "sw.db"
    s = SqliteSkillStore(f"sqlite:///{db}")
    await s.open()
    try:
        await s.put_version(make())
    finally:
        await s.close()
    assert db.is_file()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT name, version FROM skill_versions").fetchall() == [
            ("code-review", "1.0.0")
        ]


async def test_sqlite_relative_url_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = SqliteSkillStore("sqlite:///state/rel.db")
    await s.open()
    await s.close()
    assert (tmp_path / "state" / "rel.db").is_file()


async def test_sqlite_memory_store_works_and_is_private() -> None:
    a = open_skill_store("sqlite:///:memory:")
    b = open_skill_store("sqlite:///:memory:")
    await a.open()
    await b.open()
    try:
        await a.put_version(make())
        assert await a.get_version("code-review") == make()
        assert await b.get_version("code-review") is None
    finally:
        await a.close()
        await b.close()


async def test_sqlite_many_first_opens_of_one_new_file(tmp_path: Path) -> None:
    # Openers of a new file race to switch it to WAL, and SQLite answers "locked" to some
    # without waiting (deadlock avoidance). The race is timing-dependent: repeat it.
    for attempt in range(60):
        url = f"sqlite:///{tmp_path / f'race-{attempt}.db'}"
        stores = [SqliteSkillStore(url) for _ in range(8)]
        opened = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
        await asyncio.gather(*(s.close() for s in stores))
        assert opened == [None] * len(stores)
