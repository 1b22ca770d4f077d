"""Records with stored bodies (audit.store_bodies) on every audit backend: they round-trip,
the chain verifies, and a record without bodies stays as it was."""

from __future__ import annotations

import orjson

from gateway.state.audit import AuditRecord, canonical_bytes, open_audit_store


def rec(request_id: str, **kw: object) -> AuditRecord:
    return AuditRecord(request_id=request_id, endpoint="/v1/messages", decision="allow", **kw)  # type: ignore[arg-type]


async def test_bodies_round_trip_and_the_chain_verifies(store_url: str) -> None:
    with_bodies = rec(
        "kept",
        request_body='{"messages":[{"content":"h\u00e9llo [REDACTED]"}]}',
        request_body_truncated=False,
        response_body='event: message_stop\ndata: {"type":"message_stop"}\n\n',
        response_body_truncated=True,
    )
    store = open_audit_store(store_url)
    await store.open()
    try:
        for record in (rec("before"), with_bodies, rec("after")):
            await store.append(record)
        await store.flush()
        before, kept, after = await store.query()
        assert (await store.verify()).ok
    finally:
        await store.close()
    assert kept.request_body == with_bodies.request_body
    assert kept.response_body == with_bodies.response_body
    assert (kept.request_body_truncated, kept.response_body_truncated) == (False, True)
    assert before.request_body is None and after.response_body is None
    assert "request_body" not in orjson.loads(canonical_bytes(after))
