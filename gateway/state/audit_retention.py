"""Audit retention: what a prune reports, the rules both backends check, and the periodic task.

A prune deletes a prefix of the chain (every record up to the last one older than the cutoff,
in seq order, so what remains is contiguous) in chunks of PRUNE_CHUNK_ROWS, each chunk one
transaction that takes the chain-head lock, deletes, and writes a checkpoint (seq and hash of
the last deleted record). Verification then starts from the newest checkpoint
(audit_chain.py). Backends: audit_prune_sqlite.py, audit_prune_postgres.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.state.audit import AuditStore
from gateway.state.audit_chain import Checkpoint

__all__ = [
    "PRUNE_CHUNK_ROWS",
    "PruneRefused",
    "PruneResult",
    "check_prefix",
    "checkpoint_of",
    "retention",
    "retention_cutoff",
]

log = logging.getLogger(__name__)

# Rows per transaction: a large backlog never holds the chain-head lock (and so every writer)
# for more than one chunk's delete; writers' queues absorb the pause.
PRUNE_CHUNK_ROWS = 10_000
RETENTION_INTERVAL_S = 3600.0


@dataclass(frozen=True, slots=True)
class PruneResult:
    cutoff: datetime  # records older than this were due
    dry_run: bool
    deleted: int  # records deleted (dry run: that would be deleted)
    chunks: int  # transactions used (0 on a dry run)
    checkpoint_seq: int | None  # newest checkpoint afterwards (dry run: where it would be)
    checkpoint_hash: str | None


def checkpoint_of(newest: Checkpoint | None) -> tuple[int | None, str | None]:
    """(seq, hash) of a checkpoint, or (None, None) when there is none."""
    return (None, None) if newest is None else (newest.seq, newest.hash)


class PruneRefused(Exception):
    """The prefix to prune is not intact: checkpointing over it would hide the damage."""


def check_prefix(checkpoint_seq: int, upper: int, first_seq: int | None, count: int) -> None:
    """Rows checkpoint_seq+1 .. upper must all be there before they are pruned."""
    if count != upper - checkpoint_seq or (count and first_seq != checkpoint_seq + 1):
        raise PruneRefused(
            f"records #{checkpoint_seq + 1}..#{upper} are not all stored ({count} found):"
            " the log is already broken there; run `skillwarden audit verify`"
        )


def retention_cutoff(days: int, now: datetime | None = None) -> datetime:
    return (now or datetime.now(UTC)) - timedelta(days=days)


@asynccontextmanager
async def retention(
    store: AuditStore, days: int | None, *, every_s: float = RETENTION_INTERVAL_S
) -> AsyncIterator[None]:
    """With audit.retention_days set: prune now (in the background, start-up is not delayed)
    and then every `every_s`. Unset: nothing is ever deleted."""
    if days is None:
        yield
        return
    task = asyncio.create_task(_prune_forever(store, days, every_s), name="audit-retention")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _prune_forever(store: AuditStore, days: int, every_s: float) -> None:
    while True:
        try:
            result = await store.prune(
                retention_cutoff(days), reason=f"audit.retention_days={days}"
            )
            if result.deleted:
                log.info(
                    "audit retention: pruned %d record(s) older than %s; checkpoint at #%s",
                    result.deleted,
                    result.cutoff.isoformat(),
                    result.checkpoint_seq,
                )
        except PruneRefused as exc:
            log.error("audit retention: prune refused: %s", exc)
        except Exception:  # a database hiccup: try again at the next interval
            log.exception("audit retention: prune failed")
        await asyncio.sleep(every_s)
