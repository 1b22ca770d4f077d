"""Audit retention contract: checkpointed prunes, on SQLite and PostgreSQL (real servers)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from gateway.state.audit import AuditRecord, AuditStore, VerifyResult
from gateway.state.audit_retention import PruneRefused, retention
from tests.contract.test_audit_store import execute, opened, rec

NOW = datetime.now(UTC)
CUTOFF = NOW - timedelta(days=30)


async def seed(url: str, old: int, new: int) -> list[AuditRecord]:
    """`old` records from 40 days ago, then `new` from now; returns them in chain order."""
    async with opened(url, batch_size=64) as store:
        for i in range(old):
            await store.append(rec(request_id=f"old{i}", ts=NOW - timedelta(days=40, seconds=-i)))
        for i in range(new):
            await store.append(rec(request_id=f"new{i}"))
        await store.flush()
        return await store.query(limit=100_000)


async def verify(url: str) -> VerifyResult:
    async with opened(url) as store:
        return await store.verify()


def stored_seqs(url: str) -> list[int]:
    return [seq for (seq,) in execute(url, "SELECT seq FROM audit_records ORDER BY seq")]


async def test_prune_removes_exactly_the_old_prefix_and_verify_starts_at_the_checkpoint(
    store_url: str,
) -> None:
    records = await seed(store_url, old=7, new=5)
    async with opened(store_url) as store:
        result = await store.prune(CUTOFF, reason="test")
        kept = await store.query(limit=100)
        verified = await store.verify()
    assert (result.deleted, result.chunks, result.dry_run) == (7, 1, False)
    assert (result.checkpoint_seq, result.checkpoint_hash) == (7, records[6].hash)
    assert [r.request_id for r in kept] == [f"new{i}" for i in range(5)]
    assert stored_seqs(store_url) == [8, 9, 10, 11, 12]
    assert verified.ok and verified.checked == 5
    assert verified.checkpoint_seq == 7 and verified.pruned_at is not None
    assert abs(verified.pruned_at - datetime.now(UTC)) < timedelta(minutes=1)
    [(seq, hash_, deleted, reason)] = execute(
        store_url, "SELECT seq, hash, deleted, reason FROM audit_checkpoints"
    )
    assert (seq, hash_, deleted, reason) == (7, records[6].hash, 7, "test")


async def test_prune_deletes_a_prefix_in_seq_order_even_when_ts_is_not_monotonic(
    store_url: str,
) -> None:
    """An old record after a new one (a late writer): everything up to it goes, so the
    chain that remains is contiguous."""
    async with opened(store_url) as store:
        for name, ts in [("a", NOW - timedelta(days=50)), ("b", NOW), ("c", CUTOFF - timedelta(1))]:
            await store.append(rec(request_id=name, ts=ts))
        await store.append(rec(request_id="d"))
        await store.flush()
        result = await store.prune(CUTOFF, reason="test")
        kept = [r.request_id for r in await store.query()]
        assert (await store.verify()).ok
    assert result.deleted == 3 and kept == ["d"]


async def test_prune_in_chunks_writes_a_checkpoint_per_chunk_and_reports_progress(
    store_url: str,
) -> None:
    await seed(store_url, old=25, new=2)
    progress: list[int] = []
    async with opened(store_url) as store:
        if store_url.startswith("sqlite:"):
            from gateway.state.audit_prune_sqlite import prune_sqlite

            result = await prune_sqlite(
                store._writer_db,  # type: ignore[attr-defined]
                store._reader_db,  # type: ignore[attr-defined]
                CUTOFF,
                reason="test",
                dry_run=False,
                on_progress=progress.append,
                chunk_rows=10,
            )
        else:
            from gateway.state.audit_prune_postgres import prune_postgres

            result = await prune_postgres(
                store._pool,  # type: ignore[attr-defined]
                CUTOFF,
                reason="test",
                dry_run=False,
                on_progress=progress.append,
                chunk_rows=10,
            )
        verified = await store.verify()
    assert (result.deleted, result.chunks, result.checkpoint_seq) == (25, 3, 25)
    assert progress == [10, 20, 25]
    rows = execute(store_url, "SELECT seq, deleted FROM audit_checkpoints ORDER BY seq")
    assert [tuple(r) for r in rows] == [(10, 10), (20, 10), (25, 5)]
    assert verified.ok and verified.checked == 2 and verified.checkpoint_seq == 25


async def test_repeated_prunes_move_the_checkpoint_forward(store_url: str) -> None:
    await seed(store_url, old=4, new=0)
    async with opened(store_url) as store:
        first = await store.prune(CUTOFF, reason="test")
        again = await store.prune(CUTOFF, reason="test")  # nothing left that is old
        for i in range(3):
            await store.append(rec(request_id=f"mid{i}", ts=NOW - timedelta(days=35)))
        await store.append(rec(request_id="fresh"))
        await store.flush()
        third = await store.prune(CUTOFF, reason="test")
        verified = await store.verify()
        kept = [r.request_id for r in await store.query()]
    assert (first.deleted, first.checkpoint_seq) == (4, 4)
    assert (again.deleted, again.chunks, again.checkpoint_seq) == (0, 0, 4)
    assert (third.deleted, third.checkpoint_seq) == (3, 7)
    assert kept == ["fresh"]
    assert verified.ok and verified.checked == 1 and verified.checkpoint_seq == 7
    assert len(execute(store_url, "SELECT seq FROM audit_checkpoints")) == 2


async def test_prune_with_nothing_old_deletes_nothing_and_writes_no_checkpoint(
    store_url: str,
) -> None:
    await seed(store_url, old=0, new=4)
    async with opened(store_url) as store:
        result = await store.prune(CUTOFF, reason="test")
        empty_dry = await store.prune(CUTOFF, reason="test", dry_run=True)
        verified = await store.verify()
    assert (result.deleted, result.chunks, result.checkpoint_seq) == (0, 0, None)
    assert (empty_dry.deleted, empty_dry.checkpoint_seq) == (0, None)
    assert execute(store_url, "SELECT seq FROM audit_checkpoints") == []
    assert verified.ok and verified.checked == 4 and verified.checkpoint_seq is None


async def test_dry_run_reports_and_changes_nothing(store_url: str) -> None:
    records = await seed(store_url, old=3, new=2)
    async with opened(store_url) as store:
        result = await store.prune(CUTOFF, reason="test", dry_run=True)
    assert (result.dry_run, result.deleted, result.chunks) == (True, 3, 0)
    assert (result.checkpoint_seq, result.checkpoint_hash) == (3, records[2].hash)
    assert stored_seqs(store_url) == [1, 2, 3, 4, 5]
    assert execute(store_url, "SELECT seq FROM audit_checkpoints") == []


async def test_pruning_everything_leaves_an_empty_log_that_verifies(store_url: str) -> None:
    await seed(store_url, old=3, new=0)
    async with opened(store_url) as store:
        result = await store.prune(CUTOFF, reason="test")
        verified = await store.verify()
    assert result.deleted == 3 and stored_seqs(store_url) == []
    assert verified.ok and verified.checked == 0 and verified.checkpoint_seq == 3


async def test_records_appended_after_a_prune_chain_on(store_url: str) -> None:
    records = await seed(store_url, old=3, new=2)
    async with opened(store_url) as store:
        await store.prune(CUTOFF, reason="test")
        await store.append(rec(request_id="after"))
        await store.flush()
        kept = await store.query()
        verified = await store.verify()
    assert [r.request_id for r in kept] == ["new0", "new1", "after"]
    assert kept[0].prev_hash == records[2].hash and kept[-1].prev_hash == records[-1].hash
    assert stored_seqs(store_url) == [4, 5, 6]
    assert verified.ok and verified.checked == 3


async def test_deleting_rows_without_a_checkpoint_is_still_a_break(store_url: str) -> None:
    records = await seed(store_url, old=3, new=2)
    execute(store_url, "DELETE FROM audit_records WHERE seq <= 3")
    result = await verify(store_url)
    assert not result.ok and result.first_broken_id == records[3].id
    assert result.checkpoint_seq is None and "missing" in (result.reason or "")


async def test_deleting_more_rows_after_a_prune_is_detected(store_url: str) -> None:
    records = await seed(store_url, old=3, new=3)
    async with opened(store_url) as store:
        await store.prune(CUTOFF, reason="test")
    execute(store_url, "DELETE FROM audit_records WHERE seq = 4")
    result = await verify(store_url)
    assert not result.ok and result.first_broken_id == records[4].id
    assert result.checkpoint_seq == 3
    assert "checkpoint at #3 must be followed by record #4" in (result.reason or "")


async def test_a_forged_checkpoint_hash_is_detected(store_url: str) -> None:
    records = await seed(store_url, old=3, new=2)
    async with opened(store_url) as store:
        await store.prune(CUTOFF, reason="test")
    execute(store_url, "UPDATE audit_checkpoints SET hash = ? WHERE seq = 3", "f" * 64)
    result = await verify(store_url)
    assert not result.ok and result.first_broken_id == records[3].id
    assert "does not match the hash of the checkpoint at #3" in (result.reason or "")


async def test_a_checkpoint_written_over_stored_records_is_detected(store_url: str) -> None:
    """A hand-made checkpoint that skips records (e.g. to hide an edit) must not verify."""
    records = await seed(store_url, old=0, new=5)
    execute(
        store_url,
        "INSERT INTO audit_checkpoints (seq, hash, pruned_at, cutoff, deleted, reason)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        3,
        records[2].hash,
        "2026-01-01T00:00:00.000000Z",
        "2026-01-01T00:00:00.000000Z",
        3,
        "forged",
    )
    result = await verify(store_url)
    assert not result.ok and result.first_broken_id == records[0].id
    assert "checkpoint does not match the log" in (result.reason or "")


async def test_prune_refuses_to_checkpoint_over_an_already_broken_prefix(store_url: str) -> None:
    await seed(store_url, old=4, new=1)
    execute(store_url, "DELETE FROM audit_records WHERE seq = 2")
    async with opened(store_url) as store:
        with pytest.raises(PruneRefused, match="not all stored"):
            await store.prune(CUTOFF, reason="test")
        assert not (await store.verify()).ok  # the damage stays visible
    assert execute(store_url, "SELECT seq FROM audit_checkpoints") == []


async def test_prune_while_two_stores_append_leaves_one_verifying_chain(store_url: str) -> None:
    """Two replicas (or two workers on one SQLite file) append while one of them prunes."""
    await seed(store_url, old=300, new=0)
    async with opened(store_url, batch_size=4) as one, opened(store_url, batch_size=4) as two:

        async def replica(store: AuditStore, name: str) -> None:
            for i in range(80):
                # Half of them old enough to be pruned too, interleaved with the prune.
                ts = NOW - timedelta(days=40) if i % 2 else NOW
                await store.append(rec(skill=name, request_id=f"{name}-{i}", ts=ts))
                if i % 5 == 0:
                    await asyncio.sleep(0.001)

        async def pruner() -> int:
            deleted = 0
            for _ in range(5):
                deleted += (await one.prune(CUTOFF, reason="test")).deleted
                await asyncio.sleep(0.002)
            return deleted

        _, _, deleted = await asyncio.gather(replica(one, "one"), replica(two, "two"), pruner())
        await one.flush()
        await two.flush()
        result = await two.verify()
        remaining = len(await one.query(limit=10_000))
    assert result.ok, result.reason
    assert deleted >= 300 and deleted + remaining == 460
    assert result.checked == remaining


async def test_retention_task_prunes_at_start_and_nothing_when_unset(store_url: str) -> None:
    await seed(store_url, old=3, new=1)
    async with opened(store_url) as store:
        async with retention(store, None):
            await asyncio.sleep(0.05)
        assert len(stored_seqs(store_url)) == 4
        async with retention(store, 30, every_s=3600):
            for _ in range(200):
                if len(stored_seqs(store_url)) == 1:
                    break
                await asyncio.sleep(0.01)
        verified = await store.verify()
    assert stored_seqs(store_url) == [4]
    assert verified.ok and verified.checkpoint_seq == 3
    [(reason,)] = execute(store_url, "SELECT reason FROM audit_checkpoints")
    assert reason == "audit.retention_days=30"
