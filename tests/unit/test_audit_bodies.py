"""Stored bodies (audit.store_bodies): redaction, the cap, the stream tap, and the record's
canonical form with and without bodies."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import orjson
import pytest

from gateway.cli_audit import _csv
from gateway.pipeline.bodies import (
    BODY_CAP,
    REDACTED,
    BodyRecorder,
    StreamTap,
    body_recorder,
)
from gateway.settings import AuditSettings
from gateway.state.audit import (
    GENESIS_HASH,
    AuditRecord,
    canonical_bytes,
    chain_body,
    link,
    record_from_json,
    record_to_dict,
    serialise,
)

EMAIL = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}"
KEY = r"sk-[A-Za-z0-9]+"
BODY_FIELDS = {"request_body", "request_body_truncated", "response_body", "response_body_truncated"}


def rec(**kw: object) -> AuditRecord:
    return AuditRecord(request_id="r", endpoint="/v1/messages", decision="allow", **kw)  # type: ignore[arg-type]


def test_every_pattern_is_replaced_by_the_marker() -> None:
    recorder = BodyRecorder([EMAIL, KEY, "(?i)password=\\S+"])
    raw = b'{"text":"mail bob@example.com, key sk-abc123XYZ, PASSWORD=hunter2 ok"}'
    stored = recorder.capture(raw)
    assert stored.text == f'{{"text":"mail {REDACTED}, key {REDACTED}, {REDACTED} ok"}}'
    assert stored.truncated is False


def test_no_patterns_keeps_the_text_and_invalid_utf8_is_replaced() -> None:
    stored = BodyRecorder([]).capture(b"caf\xc3\xa9 \xff\xfe end")
    assert stored.text == "café \ufffd\ufffd end" and not stored.truncated


def test_a_long_body_is_cut_to_the_cap_and_flagged() -> None:
    stored = BodyRecorder([]).capture(b"a" * (BODY_CAP + 1))
    assert stored.text == "a" * BODY_CAP and stored.truncated
    exact = BodyRecorder([]).capture(b"a" * BODY_CAP)
    assert len(exact.text) == BODY_CAP and not exact.truncated


def test_a_secret_across_the_cut_is_redacted_whole() -> None:
    secret = "sk-" + "Q" * 64
    raw = ("a" * (BODY_CAP - 20) + secret + " tail").encode()
    stored = BodyRecorder([KEY]).capture(raw)
    assert stored.text == "a" * (BODY_CAP - 20) + REDACTED + " tail"
    assert not stored.truncated  # redaction shortened it under the cap
    # Cut first, the prefix "alice.w" of the address would no longer match and be stored.
    straddling = ("x" * (BODY_CAP - 8) + " alice.wonderland@example.com tail").encode()
    cut = BodyRecorder([EMAIL]).capture(straddling)
    assert cut.truncated and cut.text == "x" * (BODY_CAP - 8) + " [REDACT"


def test_a_very_long_body_is_not_decoded_past_the_window() -> None:
    raw = b"x" * (10 * BODY_CAP) + b"\xff"
    stored = BodyRecorder([]).capture(raw)
    assert stored.truncated and stored.text == "x" * BODY_CAP


def test_a_multibyte_character_cut_by_the_window_is_dropped_not_mangled() -> None:
    prefix = "é" * BODY_CAP  # 2 bytes each: the window of 2 * cap bytes ends on a boundary
    stored = BodyRecorder([]).capture(prefix.encode() + "€".encode())
    assert stored.truncated and stored.text == prefix and "\ufffd" not in stored.text
    odd = BodyRecorder([]).capture(b"a" + prefix.encode())  # window ends mid-character
    assert odd.truncated and "\ufffd" not in odd.text


def test_the_tap_keeps_the_window_and_counts_everything() -> None:
    tap = StreamTap()
    for _ in range(5):
        tap.note(b"y" * BODY_CAP)
    assert tap.size == 5 * BODY_CAP and len(tap.captured()) == 2 * BODY_CAP
    stored = BodyRecorder([]).capture(tap.captured(), tap.size)
    assert stored.truncated and len(stored.text) == BODY_CAP
    short = StreamTap()
    short.note(b"data: 1\n\n")
    assert BodyRecorder([]).capture(short.captured(), short.size).text == "data: 1\n\n"


async def test_the_tap_passes_chunks_through_and_closes_its_source() -> None:
    closed: list[bool] = []

    async def source() -> AsyncIterator[bytes]:
        try:
            for part in (b"a", b"b", b"c"):
                yield part
        finally:
            closed.append(True)

    tap = StreamTap()
    wrapped = tap.wrap(source())
    assert await anext(wrapped) == b"a"
    await wrapped.aclose()  # the client went away after the first chunk
    assert closed == [True] and tap.captured() == b"a" and tap.size == 1


def test_patterns_compile_once_per_settings_object() -> None:
    audit = AuditSettings(store_bodies=True, redact=[KEY])
    assert body_recorder(audit) is body_recorder(audit)
    other = AuditSettings(store_bodies=True, redact=[EMAIL])
    assert body_recorder(other).redact("bob@example.com sk-1") == f"{REDACTED} sk-1"


def test_records_without_bodies_leave_the_fields_out() -> None:
    r = rec()
    assert not BODY_FIELDS & set(orjson.loads(canonical_bytes(r)))
    assert not BODY_FIELDS & set(record_to_dict(r))


@pytest.mark.parametrize(
    "bodies",
    [
        {"request_body": '{"a":1}', "request_body_truncated": False},
        {
            "request_body": '{"a":"\u00e9"}',
            "request_body_truncated": True,
            "response_body": 'data: {"x":1}\n\n',
            "response_body_truncated": False,
        },
    ],
)
def test_bodies_are_hashed_and_the_cached_split_matches_canonical_bytes(
    bodies: dict[str, object],
) -> None:
    r = rec(**bodies)
    data = orjson.loads(canonical_bytes(r))
    assert {k: data[k] for k in bodies} == bodies and list(data) == sorted(data)
    head, tail = serialise(r)
    assert head + orjson.dumps(GENESIS_HASH) + tail == canonical_bytes(
        rec(**bodies, id=r.id, ts=r.ts, prev_hash=GENESIS_HASH)  # type: ignore[arg-type]
    )
    linked, body = link(r, GENESIS_HASH)
    assert chain_body(r, GENESIS_HASH) == (body, linked.hash)
    assert body == canonical_bytes(linked)
    back = record_from_json(body, linked.hash)
    assert back == linked and canonical_bytes(back) == body


def test_an_old_record_without_body_fields_still_loads_identically() -> None:
    linked, body = link(rec(reasons=["x"]), GENESIS_HASH)
    back = record_from_json(body, linked.hash)
    assert back.request_body is None and back.response_body is None
    assert canonical_bytes(back) == body


def test_csv_adds_body_columns_only_when_a_record_has_them() -> None:
    plain = rec()
    kept = rec(request_body='{"a":1}', request_body_truncated=False)
    assert "request_body" not in _csv([plain]).splitlines()[0]
    rows = list(csv.DictReader(io.StringIO(_csv([plain, kept]))))
    assert rows[0]["request_body"] == "" and rows[1]["request_body"] == '{"a":1}'
    assert rows[1]["request_body_truncated"] == "False" and "response_body" not in rows[1]
