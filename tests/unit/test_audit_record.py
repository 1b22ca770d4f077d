"""AuditRecord serialisation, chain links, and the writer's retry reconciliation (no database)."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import orjson

from gateway.state.audit import (
    GENESIS_HASH,
    AuditRecord,
    canonical_bytes,
    chain_hash,
    format_ts,
    link,
    new_record_id,
    parse_ts,
    record_from_json,
    record_to_dict,
)
from gateway.state.audit_writer import reconcile_retry


def rec(**kw: object) -> AuditRecord:
    return AuditRecord(request_id="r", endpoint="/v1/messages", decision="allow", **kw)  # type: ignore[arg-type]


def test_canonical_form_is_sorted_has_no_hash_and_fixed_ts() -> None:
    r = rec(ts=datetime(2026, 5, 1, 10, 0, tzinfo=UTC), reasons=["x"])
    body = canonical_bytes(r)
    data = orjson.loads(body)
    assert "hash" not in data and list(data) == sorted(data)
    assert data["ts"] == "2026-05-01T10:00:00.000000Z" == format_ts(r.ts)
    assert orjson.dumps(data, option=orjson.OPT_SORT_KEYS) == body  # re-serialising is stable


def test_link_hashes_prev_hash_plus_body_and_round_trips() -> None:
    linked, body = link(rec(tools_offered=["Read"], cost_usd=0.1 + 0.2), GENESIS_HASH)
    assert linked.prev_hash == GENESIS_HASH
    assert linked.hash == chain_hash(GENESIS_HASH, body)
    back = record_from_json(body, linked.hash)
    assert back == linked and canonical_bytes(back) == body


def test_lists_become_tuples_so_a_record_cannot_change_after_hashing() -> None:
    reasons = ["a"]
    r = rec(reasons=reasons)
    reasons.append("b")
    assert r.reasons == ("a",)
    assert record_to_dict(r)["reasons"] == ["a"]


def test_unknown_keys_in_a_stored_record_are_ignored() -> None:
    linked, body = link(rec(), GENESIS_HASH)
    data = orjson.loads(body) | {"added_in_v2": 1}
    assert record_from_json(orjson.dumps(data), linked.hash).id == linked.id


def test_retry_skips_records_an_earlier_attempt_committed() -> None:
    done, todo = rec(), rec()
    stored_done, body = link(done, "ab" * 32)  # committed after some other head
    assert reconcile_retry([done, todo], {done.id: body.decode()}) == [todo]


def test_retry_renames_a_record_whose_id_is_taken_by_other_content() -> None:
    first = rec()
    _, body = link(first, GENESIS_HASH)
    clash = replace(first, request_id="other")
    again = reconcile_retry([clash, clash], {first.id: body})
    assert len(again) == 2 and len({r.id for r in again} | {first.id}) == 3
    assert all(r.request_id == "other" for r in again)


def test_record_ids_are_unique_hex_and_ordered_by_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_record_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    stamps = [int(i[:12], 16) for i in ids]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after
    assert rec().id[:12] >= ids[-1][:12]  # records take their id from the same source


def test_timestamps_have_one_text_form() -> None:
    rng = random.Random(7)
    start = datetime(1000, 1, 1, tzinfo=UTC)
    for _ in range(2000):
        ts = start + timedelta(microseconds=rng.randrange(9 * 10**16))
        assert format_ts(ts) == ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert parse_ts(format_ts(ts)) == ts
    whole_second = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert format_ts(whole_second) == "2026-05-01T12:00:00.000000Z"
    berlin = timezone(timedelta(hours=1))
    assert format_ts(datetime(2026, 5, 1, 13, tzinfo=berlin)) == "2026-05-01T12:00:00.000000Z"
