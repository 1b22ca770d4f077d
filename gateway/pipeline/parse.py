"""Stage: parse the body once (orjson) and refuse bad input with 400 invalid_request.

Duplicate keys are refused: the gateway would judge the last value while some providers read
the first, so a body with both could smuggle a tool or a tool_choice past policy.
"""

from __future__ import annotations

import json
import re

import orjson

from gateway.errors import GatewayError
from gateway.formats.canonical import FormatError, Json, RequestView, loads_object
from gateway.formats.known_tools import KnownTools
from gateway.pipeline.context import RequestContext

__all__ = ["has_duplicate_keys", "parse_body"]

_SPACE_BEFORE_COLON = re.compile(rb'"[ \t\r\n]+:')


def parse_body(ctx: RequestContext, known: KnownTools) -> None:
    """ctx.request (the format's view) and ctx.model/stream/cwd from the raw body."""
    view = _parse_around_known_tools(ctx, known) or _parse_whole(ctx, known)
    ctx.request = view
    ctx.body = view.body
    ctx.model = view.model
    ctx.stream = view.stream
    # Relative path rules anchor here: the client's header, else Claude Code's system prompt.
    ctx.cwd = ctx.headers.get("x-project-dir") or view.cwd


def _parse_whole(ctx: RequestContext, known: KnownTools) -> RequestView:
    assert ctx.wire is not None
    raw = ctx.raw_body
    try:
        view = ctx.wire.parse_request(raw)
    except FormatError as exc:
        raise GatewayError("invalid_request", 400, f"invalid request body: {exc.message}") from None
    if _reserialises_to(raw, view.body):  # no duplicates, and its tools array is in raw as is
        known.remember(raw, view.body.get("tools"))
    elif has_duplicate_keys(raw, view.body):
        raise GatewayError("invalid_request", 400, "invalid request body: duplicate object keys")
    return view


def _parse_around_known_tools(ctx: RequestContext, known: KnownTools) -> RequestView | None:
    """The view of a body holding a tools array seen before, parsing only the rest of it
    (gateway/formats/known_tools.py); None sends the body down the whole path."""
    assert ctx.wire is not None
    found = known.split(ctx.raw_body)
    if found is None:
        return None
    rest, tools = found
    try:
        body = loads_object(rest, "request body")
    except FormatError:
        return None  # the whole path reports it
    if body.get("tools") != known.placeholder or has_duplicate_keys(rest, body):
        return None  # the array was not the top-level tools, or a key repeats
    body["tools"] = tools  # shared with other requests: never mutated (edits build new lists)
    try:
        return ctx.wire.request_view(body)
    except FormatError as exc:
        raise GatewayError("invalid_request", 400, f"invalid request body: {exc.message}") from None


def has_duplicate_keys(raw: bytes, parsed: Json) -> bool:
    """Exact, and cheap on ordinary bodies.

    Most clients send compact JSON (Claude Code's JSON.stringify, httpx, orjson): the body is
    then byte for byte orjson's serialisation of what it parsed, which cannot hold a duplicate
    (one pass in C, ~12 us on Claude Code's 78 KB). Else, without whitespace between a key and
    its colon, every key ends in `":` and the only other `":` in valid JSON are escaped quotes
    inside strings (an odd run of backslashes before the quote); so when the count of the
    others equals the number of keys orjson kept, nothing was dropped. Otherwise (rare) ask
    the stdlib parser.
    """
    if _reserialises_to(raw, parsed):
        return False
    if _SPACE_BEFORE_COLON.search(raw) is None and _key_ends(raw) == _count_keys(parsed):
        return False
    try:
        json.loads(raw, object_pairs_hook=_no_duplicates)
    except _Duplicate:
        return True
    except (ValueError, RecursionError):
        return False  # orjson accepted it; the stdlib's limits are not ours
    return False


def _reserialises_to(raw: bytes, parsed: Json) -> bool:
    try:
        return orjson.dumps(parsed) == raw
    except orjson.JSONEncodeError:  # e.g. nesting orjson reads but will not write
        return False


def _key_ends(raw: bytes) -> int:
    """How many `":` end a key: all but those whose quote is escaped. Claude Code's bodies
    hold some (JSON quoted in its prompts); without this they all took the slow path."""
    count = raw.count(b'":')
    pos = raw.find(b'\\":')
    while pos != -1:  # runs of backslashes are disjoint: linear in len(raw) overall
        run = 1
        while pos - run >= 0 and raw[pos - run] == 0x5C:
            run += 1
        count -= run % 2  # odd: the quote is escaped, this `":` is inside a string
        pos = raw.find(b'\\":', pos + 3)
    return count


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _Duplicate
    return found


def _count_keys(value: object) -> int:
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is dict:
            count += len(item)
            stack.extend(item.values())
        elif type(item) is list:
            stack.extend(item)
    return count
