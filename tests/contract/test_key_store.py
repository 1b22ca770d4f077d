"""The ApiKeyStore contract, run once on SQLite and once on PostgreSQL (the store_url fixture)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import psycopg
import pytest

from gateway.state.keys import ApiKeyStore, hash_key, is_key_format, new_key, open_key_store
from skills_registry.store import SkillStore, open_skill_store
from skills_registry.store_sqlite import sqlite_path


@pytest.fixture
async def keys(store_url: str) -> AsyncIterator[ApiKeyStore]:
    s = open_key_store(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def raw_dump(url: str) -> str:
    """Everything the backend holds for api_keys, as text, read around the store."""
    if url.startswith("sqlite:"):
        path = Path(sqlite_path(url))
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT * FROM api_keys").fetchall()
        # The bytes on disk too (main file and write-ahead log), not just what SELECT shows.
        files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
        return repr(rows) + "".join(p.read_bytes().decode("latin-1") for p in files)
    with psycopg.connect(url) as conn:
        return repr(conn.execute("SELECT t::text FROM api_keys t").fetchall())


async def test_create_returns_record_and_plaintext_once(keys: ApiKeyStore) -> None:
    before = datetime.now(UTC)
    record, plaintext = await keys.create("agent", "ci-bot", ("code-review", "pdf-processing"))
    assert plaintext.startswith("sk-sw-") and len(plaintext) == 6 + 43
    assert is_key_format(plaintext)
    assert record.kind == "agent" and record.consumer == "ci-bot"
    assert record.skills == ("code-review", "pdf-processing")
    assert record.active and record.revoked_at is None
    assert before <= record.created_at <= datetime.now(UTC)
    # The record never carries the key, so logging it cannot leak it.
    assert plaintext not in repr(record)
    other_record, other = await keys.create("agent", "ci-bot", None)
    assert other != plaintext and other_record.id != record.id


async def test_plaintext_is_never_stored(keys: ApiKeyStore, store_url: str) -> None:
    _, plaintext = await keys.create("admin", "root", None)
    _, second = await keys.create("agent", "bot", ("a",))
    await keys.close()  # flush everything to disk before reading the files
    dump = raw_dump(store_url)
    for key in (plaintext, second):
        assert key not in dump
        assert key.removeprefix("sk-sw-") not in dump
        assert key.removeprefix("sk-sw-")[:16] not in dump
        assert hashlib.sha256(key.encode()).hexdigest() in dump
    await keys.open()


async def test_verify_right_key(keys: ApiKeyStore) -> None:
    record, plaintext = await keys.create("agent", "alice", ("code-review",))
    await keys.create("agent", "bob", None)
    got = await keys.verify(plaintext)
    assert got == record


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),
        lambda k: k[:-1],
        lambda k: k + "x",
        lambda k: " " + k,
        lambda k: k.upper(),
        lambda k: k.replace("sk-sw-", "sk-xx-"),
        lambda k: "sk-sw-",
        lambda k: "",
        lambda k: hashlib.sha256(k.encode()).hexdigest(),  # the stored hash is not a key
        lambda k: new_key(),
    ],
)
async def test_verify_wrong_keys(keys: ApiKeyStore, mangle: object) -> None:
    _, plaintext = await keys.create("agent", "alice", None)
    wrong = mangle(plaintext)  # type: ignore[operator]
    assert wrong != plaintext
    assert await keys.verify(wrong) is None


async def test_revoked_key_no_longer_verifies(keys: ApiKeyStore) -> None:
    record, plaintext = await keys.create("agent", "alice", None)
    kept, kept_plain = await keys.create("agent", "bob", None)
    assert await keys.revoke(record.id) is True
    assert await keys.verify(plaintext) is None
    assert await keys.revoke(record.id) is False  # already revoked
    assert await keys.revoke("key_doesnotexist") is False
    assert await keys.verify(kept_plain) == kept


async def test_verify_compares_hashes_with_compare_digest(
    keys: ApiKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plaintext = await keys.create("agent", "alice", None)
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert await keys.verify(plaintext) is not None
    expected = hash_key(plaintext).encode()
    assert calls == [(expected, expected)]

    # The verdict is compare_digest's: were it to say no, the key would be refused.
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    assert await keys.verify(plaintext) is None


async def test_list_in_creation_order_with_revoked_ones(keys: ApiKeyStore) -> None:
    assert await keys.list() == []
    a, _ = await keys.create("admin", "root", None)
    b, _ = await keys.create("agent", "alice", ("x", "y"))
    c, _ = await keys.create("agent", "bob", ())
    await keys.revoke(b.id)
    listed = await keys.list()
    assert [k.id for k in listed] == [a.id, b.id, c.id]
    assert listed[0] == a and listed[2] == c
    assert listed[1].revoked_at is not None and not listed[1].active
    assert listed[1].revoked_at.utcoffset() is not None
    assert listed[1].skills == ("x", "y")
    assert listed[2].skills == ()  # no skill at all, which is not the same as None (every skill)


async def test_count_active_keys_by_kind(keys: ApiKeyStore) -> None:
    assert await keys.count("admin") == 0
    admin, _ = await keys.create("admin", "root", None)
    await keys.create("agent", "a", None)
    agent, _ = await keys.create("agent", "b", None)
    assert (await keys.count("admin"), await keys.count("agent")) == (1, 2)
    await keys.revoke(agent.id)
    await keys.revoke(admin.id)
    assert (await keys.count("admin"), await keys.count("agent")) == (0, 1)


@pytest.mark.parametrize(
    ("kind", "consumer", "skills"),
    [
        ("root", "x", None),
        ("agent", "", None),
        ("agent", "   ", None),
        ("agent", "x", ["code-review"]),
        ("agent", "x", "code-review"),
        ("agent", "x", ("",)),
    ],
)
async def test_create_refuses_bad_records(
    keys: ApiKeyStore, kind: str, consumer: str, skills: object
) -> None:
    with pytest.raises(ValueError):
        await keys.create(kind, consumer, skills)  # type: ignore[arg-type]
    assert await keys.list() == []


async def test_unicode_consumer_and_skills(keys: ApiKeyStore) -> None:
    record, plaintext = await keys.create("agent", 'José 🛡 "q"', ("ünïcode", "a,b"))
    assert await keys.verify(plaintext) == record
    assert await keys.list() == [record]


async def test_reopen_keeps_keys_and_revocations(store_url: str) -> None:
    first = open_key_store(store_url)
    await first.open()
    kept, kept_plain = await first.create("agent", "alice", ("s",))
    gone, gone_plain = await first.create("admin", "root", None)
    await first.revoke(gone.id)
    await first.close()

    second = open_key_store(store_url)
    await second.open()
    try:
        assert await second.verify(kept_plain) == kept
        assert await second.verify(gone_plain) is None
        assert await second.count("admin") == 0
    finally:
        await second.close()


async def test_concurrent_creates_are_all_distinct_and_valid(keys: ApiKeyStore) -> None:
    created = await asyncio.gather(*(keys.create("agent", f"c{i}", None) for i in range(20)))
    assert len({r.id for r, _ in created}) == 20
    assert len({p for _, p in created}) == 20
    verified = await asyncio.gather(*(keys.verify(p) for _, p in created))
    assert verified == [r for r, _ in created]
    assert await keys.count("agent") == 20


async def test_shares_a_database_with_the_skill_store(store_url: str) -> None:
    # Several replicas opening both stores on a fresh database at the same moment.
    stores: list[ApiKeyStore | SkillStore] = []
    for _ in range(5):
        stores += [open_skill_store(store_url), open_key_store(store_url)]
    opened = await asyncio.gather(*(s.open() for s in stores), return_exceptions=True)
    try:
        assert opened == [None] * len(stores)
        skills, keys = cast(SkillStore, stores[0]), cast(ApiKeyStore, stores[-1])
        _, plaintext = await keys.create("agent", "a", None)
        assert await skills.list_latest() == []
        assert await keys.verify(plaintext) is not None
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_use_before_open_is_an_error(store_url: str) -> None:
    with pytest.raises(RuntimeError):
        await open_key_store(store_url).verify(new_key())


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="scheme"):
        open_key_store("mysql://x/y")
