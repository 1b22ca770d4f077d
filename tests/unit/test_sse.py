"""gateway.upstream.sse: any chunking gives the same events; encoder round-trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstream.sse import SSEDecoder, SSEError, SSEEvent, encode_event, encode_events

STREAMS = Path(__file__).parent.parent / "cases" / "streams"


def decode_chunks(chunks: list[bytes], **kw: Any) -> list[SSEEvent]:
    dec = SSEDecoder(**kw)
    out: list[SSEEvent] = []
    for c in chunks:
        out += dec.feed(c)
    out += dec.close()
    return out


def split_at(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(raw)) for c in cuts})
    bounds = [0, *points, len(raw)]
    return [raw[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def test_basic_fields_and_dispatch() -> None:
    raw = b"event: ping\ndata: {}\n\nid: 7\nretry: 1500\ndata: a\ndata: b\n\n"
    assert decode_chunks([raw]) == [
        SSEEvent("{}", "ping"),
        SSEEvent("a\nb", None, "7", 1500),
    ]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_all_line_endings(eol: bytes) -> None:
    raw = eol.join([b"event: x", b"data: 1", b"", b"data: 2", b"", b""])
    assert decode_chunks([raw]) == [SSEEvent("1", "x"), SSEEvent("2")]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    # A CR at the end of a chunk dispatches at once; the LF that follows is not a blank line.
    dec = SSEDecoder()
    assert dec.feed(b"data: a\r\n\r") == [SSEEvent("a")]
    assert dec.feed(b"\ndata: b\r") == []
    assert dec.feed(b"\n\r\n") == [SSEEvent("b")]


def test_multibyte_utf8_split_inside_character() -> None:
    raw = 'data: {"text": "héllo → 世界 🎉"}\n\n'.encode()
    for cut in range(1, len(raw)):
        assert decode_chunks([raw[:cut], raw[cut:]]) == [SSEEvent('{"text": "héllo → 世界 🎉"}')]


def test_comments_are_kept_or_dropped() -> None:
    raw = b": keep-alive\ndata: x\n\n:\n"
    assert decode_chunks([raw]) == [
        SSEEvent(comment="keep-alive"),
        SSEEvent("x"),
        SSEEvent(comment=""),
    ]
    assert decode_chunks([raw], keep_comments=False) == [SSEEvent("x")]


def test_spec_details() -> None:
    # No space after the colon, a field without colon, unknown fields, empty data, BOM.
    raw = b"\xef\xbb\xbfdata:x\ndata\nfoo: bar\n\nevent: only-name\n\ndata:\n\n"
    assert decode_chunks([raw]) == [SSEEvent("x\n"), SSEEvent("")]
    assert decode_chunks([b"retry: 1x\nid: a\x00b\ndata: y\n\n"]) == [SSEEvent("y")]


def test_truncated_event_is_not_dispatched() -> None:
    dec = SSEDecoder()
    assert dec.feed(b'data: {"partial": tr') == []
    assert dec.has_partial
    assert dec.close() == []


def test_over_long_line_is_an_error_without_newline() -> None:
    dec = SSEDecoder(max_event_bytes=1024)
    dec.feed(b"data: " + b"x" * 1000)
    with pytest.raises(SSEError):
        dec.feed(b"x" * 100)


def test_over_long_event_across_many_lines_is_an_error() -> None:
    dec = SSEDecoder(max_event_bytes=1024)
    with pytest.raises(SSEError):
        for _ in range(200):
            dec.feed(b"data: 0123456789\n")


def test_size_bound_resets_per_event() -> None:
    dec = SSEDecoder(max_event_bytes=64)
    for _ in range(100):
        assert dec.feed(b"data: 0123456789012345678901234567890\n\n") == [
            SSEEvent("0123456789012345678901234567890")
        ]


def test_encoder_round_trips_the_captured_stream() -> None:
    raw = (STREAMS / "anthropic_tool_use.sse").read_bytes()
    events = decode_chunks([raw])
    assert len(events) == 15
    assert encode_events(events) == raw


def test_encoder_splits_multiline_data_and_comments() -> None:
    ev = SSEEvent("a\nb\r\nc", "e", "1", 10)
    assert encode_event(ev) == b"event: e\nid: 1\nretry: 10\ndata: a\ndata: b\ndata: c\n\n"
    assert decode_chunks([encode_event(ev)]) == [SSEEvent("a\nb\nc", "e", "1", 10)]
    assert encode_event(SSEEvent(comment="hi")) == b": hi\n\n"


_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=20)
_events = st.lists(
    st.builds(
        SSEEvent,
        data=st.lists(_text, min_size=1, max_size=3).map("\n".join),
        event=st.none() | _text.filter(bool),
        id=st.none() | _text.filter(lambda s: "\0" not in s),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(
    events=_events, eol=st.sampled_from(["\n", "\r\n", "\r"]), cuts=st.lists(st.integers(0, 400))
)
def test_any_split_gives_the_same_events(events: list[SSEEvent], eol: str, cuts: list[int]) -> None:
    raw = encode_events(events).replace(b"\n", eol.encode())
    expected = [SSEEvent(e.data, e.event, e.id) for e in events]
    assert decode_chunks([raw]) == expected
    assert decode_chunks(split_at(raw, cuts)) == expected
    assert decode_chunks([raw[i : i + 1] for i in range(len(raw))]) == expected
