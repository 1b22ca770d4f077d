"""AuditStore contract: the same suite against SQLite and PostgreSQL (real servers)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from gateway.state.audit import (
    GENESIS_HASH,
    AuditFlushError,
    AuditRecord,
    AuditStore,
    canonical_bytes,
    chain_hash,
    open_audit_store,
)
from skills_registry.store_sqlite import sqlite_path


def rec(skill: str = "code-review", decision: str = "allow", **kw: Any) -> AuditRecord:
    return AuditRecord(
        request_id=kw.pop("request_id", "req-1"),
        endpoint="/v1/messages",
        decision=decision,  # type: ignore[arg-type]
        status=200 if decision == "allow" else 403,
        skill=skill,
        **kw,
    )


@asynccontextmanager
async def opened(url: str, **opts: Any) -> AsyncIterator[AuditStore]:
    store = open_audit_store(url, **opts)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextmanager
def raw(url: str) -> Iterator[Any]:
    """A plain DB-API connection to the backend, for tampering behind the store's back."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()
    else:
        with psycopg.connect(url, autocommit=True) as pg:
            yield pg


def execute(url: str, sql: str, *args: Any) -> list[Any]:
    if url.startswith("postgres"):
        sql = sql.replace("?", "%s")
    with raw(url) as conn:
        cur = conn.execute(sql, args)
        return list(cur.fetchall()) if cur.description else []


async def test_append_then_query_returns_the_record_with_its_chain_fields(store_url: str) -> None:
    record = rec(
        consumer="alice",
        skill_version="1.2.0",
        skill_digest="sha256:abc",
        bound_by="header",
        session_id="s-1",
        provider="anthropic",
        model="claude-sonnet-4",
        reasons=["tool Bash removed"],
        tools_offered=["Read", "Bash"],
        tools_removed=["Bash"],
        tool_calls=[{"name": "Read", "input_digest": "d1", "decision": "allow", "rule": "Read"}],
        input_tokens=10,
        output_tokens=5,
        cost_usd=0.0012,
        latency_ms=12.5,
        upstream_attempts=[{"provider": "anthropic", "status": 200}],
    )
    async with opened(store_url) as store:
        await store.append(record)
        await store.flush()
        [got] = await store.query()
    assert got.prev_hash == GENESIS_HASH
    assert got.hash == chain_hash(GENESIS_HASH, canonical_bytes(got))
    assert replace(got, prev_hash="", hash="") == record


async def test_query_filters_and_ordering(store_url: str) -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    async with opened(store_url) as store:
        await store.append(rec("a", "allow", ts=old, request_id="r0"))
        for i in range(1, 6):
            await store.append(
                rec("a" if i % 2 else "b", "deny" if i > 3 else "allow", request_id=f"r{i}")
            )
        await store.flush()
        everything = await store.query()
        only_a = await store.query(skill="a")
        recent = await store.query(since=datetime.now(UTC) - timedelta(days=1))
        denied_a = await store.query(skill="a", decision="deny")
        last_two = await store.query(limit=2)
    assert [r.request_id for r in everything] == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert [r.request_id for r in only_a] == ["r0", "r1", "r3", "r5"]
    assert [r.request_id for r in recent] == ["r1", "r2", "r3", "r4", "r5"]
    assert [r.request_id for r in denied_a] == ["r5"]
    assert [r.request_id for r in last_two] == ["r4", "r5"]  # the newest, oldest first


async def test_chain_links_every_record_and_verifies(store_url: str) -> None:
    async with opened(store_url, batch_size=3) as store:
        for i in range(10):
            await store.append(rec(request_id=f"r{i}"))
        await store.flush()
        records = await store.query(limit=100)
        result = await store.verify()
    assert result.ok and result.checked == 10 and result.first_broken_id is None
    prev = GENESIS_HASH
    for r in records:
        assert r.prev_hash == prev
        prev = r.hash


async def test_a_batch_larger_than_one_insert_lands_whole_and_chained(store_url: str) -> None:
    # 250 records queued at once: one batch (batch_size 256) split over several INSERTs.
    async with opened(store_url, batch_size=256) as store:
        await asyncio.gather(*(store.append(rec(request_id=f"r{i}")) for i in range(250)))
        await store.flush()
        records = await store.query(limit=1000)
        result = await store.verify()
    assert [r.request_id for r in records] == [f"r{i}" for i in range(250)]
    assert result.ok and result.checked == 250


async def test_empty_log_verifies(store_url: str) -> None:
    async with opened(store_url) as store:
        result = await store.verify()
    assert result.ok and result.checked == 0


async def _seed(url: str, n: int) -> list[AuditRecord]:
    async with opened(url) as store:
        for i in range(n):
            await store.append(rec(request_id=f"r{i}", decision="deny" if i == 2 else "allow"))
    async with opened(url) as store:
        return await store.query()


async def _verify(url: str) -> Any:
    async with opened(url) as store:
        return await store.verify()


async def test_edited_body_is_detected_at_that_record(store_url: str) -> None:
    records = await _seed(store_url, 5)
    victim = records[2]
    [(body,)] = execute(store_url, "SELECT body FROM audit_records WHERE id = ?", victim.id)
    forged = body.replace('"decision":"deny"', '"decision":"allow"')
    assert forged != body
    execute(store_url, "UPDATE audit_records SET body = ? WHERE id = ?", forged, victim.id)
    result = await _verify(store_url)
    assert not result.ok
    assert (result.first_broken_id, result.checked) == (victim.id, 2)
    assert "altered" in result.reason


async def test_edited_column_is_detected(store_url: str) -> None:
    records = await _seed(store_url, 4)
    execute(store_url, "UPDATE audit_records SET decision = 'allow' WHERE id = ?", records[2].id)
    result = await _verify(store_url)
    assert not result.ok and result.first_broken_id == records[2].id
    assert "decision" in result.reason


async def test_rehashed_record_breaks_the_next_link(store_url: str) -> None:
    """An attacker who recomputes the edited record's hash still breaks its successor."""
    records = await _seed(store_url, 4)
    victim = records[1]
    [(body,)] = execute(store_url, "SELECT body FROM audit_records WHERE id = ?", victim.id)
    forged = body.replace('"req-1"', '"req-x"').replace('"r1"', '"rX"')
    new_hash = chain_hash(victim.prev_hash, forged.encode())
    execute(
        store_url,
        "UPDATE audit_records SET body = ?, hash = ? WHERE id = ?",
        forged,
        new_hash,
        victim.id,
    )
    result = await _verify(store_url)
    assert not result.ok and result.first_broken_id == records[2].id


async def test_deleted_row_is_detected_at_the_next_record(store_url: str) -> None:
    records = await _seed(store_url, 5)
    execute(store_url, "DELETE FROM audit_records WHERE id = ?", records[1].id)
    result = await _verify(store_url)
    assert not result.ok
    assert (result.first_broken_id, result.checked) == (records[2].id, 1)
    assert "missing" in result.reason


async def test_deleted_first_and_last_rows_are_detected(store_url: str) -> None:
    records = await _seed(store_url, 3)
    execute(store_url, "DELETE FROM audit_records WHERE id = ?", records[-1].id)
    tail = await _verify(store_url)
    assert not tail.ok and tail.first_broken_id is None and "deleted" in tail.reason
    execute(store_url, "DELETE FROM audit_records WHERE id = ?", records[0].id)
    head = await _verify(store_url)
    assert not head.ok and head.first_broken_id == records[1].id


async def test_concurrent_appends_from_many_tasks_form_one_linear_chain(store_url: str) -> None:
    async with opened(store_url, max_queue=16, batch_size=8) as store:

        async def agent(n: int) -> None:
            for i in range(20):
                await store.append(rec(skill=f"s{n}", request_id=f"{n}-{i}"))
                await asyncio.sleep(0)

        await asyncio.gather(*(agent(n) for n in range(25)))
        await store.flush()
        result = await store.verify()
        got = await store.query(limit=1000)
    assert result.ok and result.checked == 500
    assert len({r.id for r in got}) == 500


async def test_two_store_instances_on_one_database_form_one_chain(store_url: str) -> None:
    """Two replicas (PostgreSQL) or two uvicorn workers on one file (SQLite)."""
    async with opened(store_url, batch_size=4) as one, opened(store_url, batch_size=4) as two:

        async def replica(store: AuditStore, name: str) -> None:
            for i in range(60):
                await store.append(rec(skill=name, request_id=f"{name}-{i}"))
                if i % 7 == 0:
                    await asyncio.sleep(0.001)

        await asyncio.gather(replica(one, "one"), replica(two, "two"))
        await one.flush()
        await two.flush()
        result = await one.verify()
        assert result.ok and result.checked == 120
        assert len(await two.query(skill="one", limit=500)) == 60


async def test_reused_id_gets_a_fresh_id_instead_of_wedging_the_writer(store_url: str) -> None:
    async with opened(store_url) as store:
        first = rec(request_id="a")
        await store.append(first)
        await store.flush()
        await store.append(replace(first, request_id="b"))  # same id, other content: a bug
        await store.append(rec(request_id="c"))
        await asyncio.wait_for(store.flush(), 10)
        got = await store.query()
        assert [r.request_id for r in got] == ["a", "b", "c"]
        assert len({r.id for r in got}) == 3 and got[0].id == first.id
        assert (await store.verify()).ok


async def test_close_flushes_everything_pending(store_url: str) -> None:
    store = open_audit_store(store_url, batch_size=5)
    await store.open()
    for i in range(200):
        await store.append(rec(request_id=f"r{i}"))
    await store.close()  # no flush() before: close must write them all
    async with opened(store_url) as again:
        assert len(await again.query(limit=1000)) == 200
        assert (await again.verify()).ok


async def test_append_after_close_is_an_error_not_a_silent_drop(store_url: str) -> None:
    store = open_audit_store(store_url)
    await store.open()
    await store.close()
    with pytest.raises(RuntimeError):
        await store.append(rec())


@contextmanager
def write_lock(url: str) -> Iterator[None]:
    """Hold the chain head from outside, as a slow or stuck database would."""
    with raw(url) as conn:
        if url.startswith("sqlite:"):
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn.autocommit = False
            conn.execute("SELECT 1 FROM audit_head WHERE id = 1 FOR UPDATE")
        try:
            yield
        finally:
            conn.rollback()


async def test_append_returns_at_once_while_the_database_is_locked(store_url: str) -> None:
    async with opened(store_url) as store:
        await store.append(rec(request_id="warm"))
        await store.flush()
        with write_lock(store_url):
            loop = asyncio.get_running_loop()
            started = loop.time()
            for i in range(50):
                await store.append(rec(request_id=f"r{i}"))
            await asyncio.sleep(0.2)  # the loop keeps running while the writer is stuck
            assert loop.time() - started < 1.0
            assert len(await store.query(limit=100)) == 1
        await store.flush()
        assert len(await store.query(limit=100)) == 51


async def test_full_queue_applies_backpressure_and_loses_nothing(store_url: str) -> None:
    async with opened(store_url, max_queue=2, batch_size=1) as store:
        await store.append(rec(request_id="warm"))
        await store.flush()
        with write_lock(store_url):
            # The writer holds one record in flight; the queue takes two more; then callers wait.
            for i in range(3):
                await asyncio.wait_for(store.append(rec(request_id=f"r{i}")), 1.0)
            await asyncio.sleep(0.1)
            blocked = asyncio.create_task(store.append(rec(request_id="blocked")))
            cancelled = asyncio.create_task(store.append(rec(request_id="cancelled")))
            await asyncio.sleep(0.3)
            assert not blocked.done() and not cancelled.done()
            cancelled.cancel()  # the client went away while waiting: its record is kept
        await asyncio.wait_for(blocked, 10.0)
    async with opened(store_url) as store:
        ids = {r.request_id for r in await store.query(limit=100)}
        assert ids == {"warm", "r0", "r1", "r2", "blocked", "cancelled"}
        assert (await store.verify()).ok


async def test_close_that_cannot_flush_raises_with_the_records(store_url: str) -> None:
    store = open_audit_store(store_url, close_timeout=0.5)
    await store.open()
    with write_lock(store_url):
        for i in range(3):
            await store.append(rec(request_id=f"r{i}"))
        with pytest.raises(AuditFlushError) as failed:
            await store.close()
    assert {r.request_id for r in failed.value.records} == {"r0", "r1", "r2"}


async def test_unserialisable_record_fails_in_the_caller(store_url: str) -> None:
    async with opened(store_url) as store:
        with pytest.raises(TypeError):
            await store.append(rec(upstream_attempts=[{"error": object()}]))
        await store.append(rec())
        await store.flush()
        assert len(await store.query()) == 1


def test_record_type_has_no_place_for_secrets() -> None:
    names = {f.name for f in fields(AuditRecord)}
    # Bodies have their own fields (audit.store_bodies, redacted by the pipeline); headers,
    # where the keys travel, never do.
    assert not names & {"headers", "authorization", "api_key", "body"}
    with pytest.raises(TypeError):
        AuditRecord(request_id="r", endpoint="/", decision="allow", headers={})  # type: ignore[call-arg]


async def test_reasons_are_stored_verbatim_the_store_is_not_a_redactor(store_url: str) -> None:
    """Keeping secrets out of reasons is the pipeline's job; the store neither hides nor
    mangles text, so what was hashed is exactly what reviewers read back."""
    reason = "prompt_blocked: pattern 'Authorization: Bearer' matched"
    async with opened(store_url) as store:
        await store.append(rec(reasons=[reason]))
        await store.flush()
        [got] = await store.query()
    assert got.reasons == (reason,)
    assert orjson.loads(canonical_bytes(got))["reasons"] == [reason]


def test_record_validates_decision_kind_and_timezone() -> None:
    with pytest.raises(ValueError):
        rec(decision="maybe")
    with pytest.raises(ValueError):
        rec(kind="other")
    with pytest.raises(ValueError):
        rec(ts=datetime(2026, 1, 1))
    local = datetime(2026, 1, 1, 12, tzinfo=UTC).astimezone()
    assert rec(ts=local).ts.tzinfo is UTC
