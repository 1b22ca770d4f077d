"""Audit records, their hash-chain serialisation, and the AuditStore Protocol.

A record is hashed as sha256(prev_hash + canonical JSON of the record without `hash`); the
canonical form is orjson with sorted keys and a fixed timestamp format, so the stored bytes
are exactly the bytes that were hashed. Backends: audit_sqlite.py, audit_postgres.py.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, get_args

import orjson

if TYPE_CHECKING:  # the prune result lives with the prune logic, which imports this module
    from gateway.state.audit_retention import PruneResult

__all__ = [
    "GENESIS_HASH",
    "AuditFlushError",
    "AuditRecord",
    "AuditStore",
    "Decision",
    "RecordKind",
    "ToolCallEntry",
    "VerifyResult",
    "canonical_bytes",
    "chain_body",
    "chain_hash",
    "format_ts",
    "link",
    "new_record_id",
    "open_audit_store",
    "parse_ts",
    "record_from_json",
    "record_to_dict",
    "serialise",
]

Decision = Literal["allow", "deny", "partial"]
RecordKind = Literal["request", "tool_check"]

# prev_hash of the first record: a fixed value, so deleting the first record is detectable.
GENESIS_HASH = "0" * 64
_STR_LISTS = ("reasons", "tools_offered", "tools_removed")
_DICT_LISTS = ("tool_calls", "upstream_attempts")


class ToolCallEntry(TypedDict):
    """The documented shape of one `tool_calls` entry (plain dicts are accepted)."""

    name: str
    input_digest: str
    decision: str
    rule: str | None


def new_record_id() -> str:
    """32 hex digits: Unix time in milliseconds, then 80 random bits. Time-ordered (as a
    UUIDv7), so each new id lands at the end of the stores' unique index on id, not on a
    random page of it: an SQLite audit insert cost ~2.5x more CPU with uuid4 ids
    (22 vs 9 us per record at 100,000 rows). An id names a record, it guards nothing: the
    bits come from `random` (seeded from os.urandom, reseeded in forked children), not a
    getrandom() syscall per record."""
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(80):020x}"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One request or tool-call check. There is deliberately no field for headers: secrets
    cannot reach the audit log through this type. Bodies are there only when the operator
    turned `audit.store_bodies` on, and then redacted (gateway/pipeline/bodies.py).
    `prev_hash`/`hash` are set by the store when the record joins the chain; callers leave
    them empty."""

    # Field order is the output column order (jsonl, csv): PRODUCT.md's order, then extras.
    id: str = field(default_factory=new_record_id)
    ts: datetime = field(default_factory=_now)
    kind: RecordKind = "request"
    request_id: str
    consumer: str | None = None
    skill: str | None = None
    skill_version: str | None = None
    skill_digest: str | None = None
    bound_by: str | None = None  # how the skill was bound: skill_tool_call | header | ...
    session_id: str | None = None
    endpoint: str
    provider: str | None = None
    model: str | None = None
    status: int = 0
    decision: Decision
    reasons: Sequence[str] = ()
    tools_offered: Sequence[str] = ()
    tools_removed: Sequence[str] = ()
    tool_calls: Sequence[Mapping[str, Any]] = ()  # ToolCallEntry-shaped
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: float = 0.0
    upstream_attempts: Sequence[Mapping[str, Any]] = ()
    prev_hash: str = ""
    hash: str = ""
    # Only with audit.store_bodies (else None, and left out of the stored JSON, so records
    # without bodies are exactly what they were before these fields existed).
    request_body: str | None = None
    request_body_truncated: bool | None = None
    response_body: str | None = None
    response_body_truncated: bool | None = None
    # The canonical form split around prev_hash, set by serialise() (the writer's append):
    # serialised once on the request path, where it also validates, and not again in the
    # writer thread, which then only splices the chain head in and hashes. replace() resets it.
    _parts: tuple[bytes, bytes] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.decision not in _DECISIONS:
            raise ValueError(f"decision must be allow|deny|partial, not {self.decision!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be request|tool_check, not {self.kind!r}")
        if self.ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware")
        # Frozen: normalise through object.__setattr__ so lists passed by callers become
        # tuples (the record cannot change after it was hashed) and ts is UTC.
        object.__setattr__(self, "ts", self.ts.astimezone(UTC))
        for name in _STR_LISTS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in _DICT_LISTS:
            object.__setattr__(self, name, tuple(dict(d) for d in getattr(self, name)))


_DECISIONS = frozenset(get_args(Decision))
_KINDS = frozenset(get_args(RecordKind))
_FIELD_NAMES = tuple(f.name for f in fields(AuditRecord) if f.init)
# Left out of the JSON when None (the stored bodies); every other field is always there.
_OMITTED_WHEN_NONE = (
    "request_body",
    "request_body_truncated",
    "response_body",
    "response_body_truncated",
)
_ALWAYS = tuple(n for n in _FIELD_NAMES if n not in _OMITTED_WHEN_NONE)
# Fields on each side of prev_hash in sorted-key order (all ASCII: str order is orjson's).
_BEFORE_PREV = frozenset(n for n in _FIELD_NAMES if n < "prev_hash")
# Both sides non-empty in every record, the omitted fields aside.
assert _BEFORE_PREV and len(_BEFORE_PREV & set(_ALWAYS)) < len(_ALWAYS) - 2


def format_ts(ts: datetime) -> str:
    """The one text form of a timestamp in the audit log, e.g. 2026-05-01T12:00:00.000000Z.
    Always UTC, microseconds and Z: one datetime has exactly one text form (stable hashes),
    and the text sorts chronologically (SQLite compares it as a string). isoformat, not
    strftime: a third cheaper, and it pads the year to four digits as parse_ts wants."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_ts(text: str) -> datetime:
    """Inverse of format_ts (also accepts any ISO 8601 form with an offset)."""
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def record_to_dict(record: AuditRecord, *, with_hash: bool = True) -> dict[str, Any]:
    """JSON-ready dict of every field (what `--format jsonl` prints); the body fields only
    when they are set."""
    data = {name: getattr(record, name) for name in _ALWAYS}
    for name in _OMITTED_WHEN_NONE:
        value = getattr(record, name)
        if value is not None:
            data[name] = value
    data["ts"] = format_ts(record.ts)
    for name in (*_STR_LISTS, *_DICT_LISTS):
        data[name] = list(data[name])
    if not with_hash:
        del data["hash"]
    return data


def canonical_bytes(record: AuditRecord) -> bytes:
    """The hashed and stored form: sorted keys, no `hash` field."""
    return orjson.dumps(record_to_dict(record, with_hash=False), option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def link(record: AuditRecord, prev_hash: str) -> tuple[AuditRecord, bytes]:
    """Attach the record to the chain after prev_hash; returns it with its hash, and its body."""
    body, hash_ = chain_body(record, prev_hash)
    return replace(record, prev_hash=prev_hash, hash=hash_), body


def chain_body(record: AuditRecord, prev_hash: str) -> tuple[bytes, str]:
    """What link() stores and hashes, without building the linked record (the writers need
    only these two; each replace() re-runs the record's validation). Byte for byte
    canonical_bytes() of the record with prev_hash set."""
    head, tail = serialise(record)
    body = head + orjson.dumps(prev_hash) + tail
    return body, chain_hash(prev_hash, body)


def serialise(record: AuditRecord) -> tuple[bytes, bytes]:
    """The canonical form around the prev_hash value: `{..."prev_hash":` and `,...}`
    (sorted keys, so prev_hash sits between the same neighbours in every record). Computed
    once per record; TypeError here when a field holds something JSON cannot carry."""
    if record._parts is None:
        data = record_to_dict(record, with_hash=False)
        del data["prev_hash"]
        before = {k: v for k, v in data.items() if k in _BEFORE_PREV}
        after = {k: v for k, v in data.items() if k not in _BEFORE_PREV}
        opt = orjson.OPT_SORT_KEYS
        head = orjson.dumps(before, option=opt)[:-1] + b',"prev_hash":'
        parts = (head, b"," + orjson.dumps(after, option=opt)[1:])
        object.__setattr__(record, "_parts", parts)  # a cache of frozen fields
        return parts
    return record._parts


def record_from_json(body: bytes | str, hash_: str) -> AuditRecord:
    """Rebuild a stored record. Unknown keys are ignored and missing ones take their
    defaults, so records written by older or newer versions still load."""
    data = orjson.loads(body)
    kwargs = {k: v for k, v in data.items() if k in _FIELD_NAMES and k != "hash"}
    kwargs["ts"] = parse_ts(kwargs["ts"])
    return AuditRecord(**kwargs, hash=hash_)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int  # records whose link verified before the first break (all of them when ok)
    first_broken_id: str | None = None  # None when ok, or when the break is after the last record
    reason: str | None = None
    # Set when the walk started from a prune checkpoint instead of GENESIS_HASH.
    checkpoint_seq: int | None = None
    pruned_at: datetime | None = None


class AuditFlushError(Exception):
    """close() could not write every record in time; they are attached, never dropped quietly."""

    def __init__(self, records: Sequence[AuditRecord], cause: str) -> None:
        super().__init__(f"{len(records)} audit record(s) not confirmed written: {cause}")
        self.records = list(records)


class AuditStore(Protocol):
    async def open(self) -> None:
        """Connect, create the schema if needed, start the writer task."""

    async def close(self) -> None:
        """Write everything accepted so far, then disconnect; AuditFlushError on timeout."""

    async def append(self, record: AuditRecord) -> None:
        """Enqueue for the writer; returns at once unless the queue is full, then waits for
        room (backpressure, never a drop). Raises RuntimeError when the store is closed."""

    async def flush(self) -> None:
        """Wait until every record appended before this call is written."""

    async def query(
        self,
        *,
        skill: str | None = None,
        since: datetime | None = None,
        decision: Decision | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        """The `limit` newest matching records, oldest first (chain order)."""

    async def verify(self) -> VerifyResult:
        """Walk the whole chain (from the newest prune checkpoint, if any) and report the
        first broken link."""

    async def prune(
        self,
        before: datetime,
        *,
        reason: str,
        dry_run: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> PruneResult:
        """Delete the chain prefix up to the last record older than `before`, in chunks, each
        one transaction that also writes a checkpoint. on_progress(deleted so far) after each
        chunk. PruneRefused when the prefix is not intact (rows already missing)."""


def open_audit_store(
    url: str, *, max_queue: int = 10_000, batch_size: int = 256, close_timeout: float = 30.0
) -> AuditStore:
    """sqlite:///path (or sqlite:///:memory:) or postgresql://...; call open() next."""
    opts: dict[str, Any] = {
        "max_queue": max_queue,
        "batch_size": batch_size,
        "close_timeout": close_timeout,
    }
    if url.startswith("sqlite:"):
        from gateway.state.audit_sqlite import SqliteAuditStore

        return SqliteAuditStore(url, **opts)
    if url.startswith(("postgresql:", "postgres:")):
        from gateway.state.audit_postgres import PostgresAuditStore

        return PostgresAuditStore(url, **opts)
    raise ValueError(f"unsupported storage URL scheme: {url.split(':', 1)[0]!r}")
