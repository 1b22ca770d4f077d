"""Anthropic Messages streams: text flows at once, each tool-use block waits for its verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from gateway.formats.anthropic_messages.response import (
    block_tool_call,
    is_tool_call_block,
    usage_from,
)
from gateway.formats.canonical import (
    FormatError,
    GateMode,
    Json,
    ToolCall,
    Usage,
    Verdict,
    denial_text,
    loads_object,
    parse_arguments,
)
from gateway.upstream.sse import SSEEvent

__all__ = ["StreamGate", "text_block_events"]


@dataclass(slots=True)
class _Held:
    index: int
    block: Json
    events: list[SSEEvent]
    parts: list[str] = field(default_factory=list)
    foreign_delta: bool = False  # a delta that is not input_json_delta: input unknown


class StreamGate:
    """Feed upstream events, forward what feed()/close() return. One gate per response stream.

    After a denial in mode "error", `failure` is set and nothing more is returned: the caller
    ends the stream with errors.stream_error_event().
    """

    def __init__(self, decide: Callable[[ToolCall], Verdict], mode: GateMode = "redact") -> None:
        self._decide = decide
        self._mode = mode
        self._held: _Held | None = None
        self._allowed = 0  # client tool_use blocks released
        self._denied = 0
        self.usage = Usage()
        self.verdicts: list[tuple[ToolCall, Verdict]] = []
        self.failure: tuple[ToolCall, Verdict] | None = None

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        """One upstream event in; the events to send to the client now, in order."""
        if self.failure is not None:
            return []
        if ev.comment is not None:
            return [ev]
        obj = loads_object(ev.data, "upstream stream event")
        kind = obj.get("type")
        if kind == "content_block_start":
            return self._start(ev, obj)
        if kind == "content_block_delta":
            return self._delta(ev, obj)
        if kind == "content_block_stop":
            held = self._held
            if held is None:
                return [ev]
            if _index(obj) != held.index:
                raise FormatError("content_block_stop for a block that is not open")
            return self._release(ev)
        if kind == "message_start":
            message = obj.get("message")
            self.usage = usage_from(message.get("usage") if isinstance(message, dict) else None)
            return [ev]
        if kind == "message_delta":
            return self._message_delta(ev, obj)
        return [ev]  # ping, message_stop, error and future event types carry no tool input

    def close(self) -> list[SSEEvent]:
        """Upstream ended. A tool call still open is decided now; incomplete input is denied."""
        if self.failure is not None or self._held is None:
            return []
        return self._release(None)

    def _start(self, ev: SSEEvent, obj: Json) -> list[SSEEvent]:
        index = _index(obj)
        block = obj.get("content_block")
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise FormatError("content_block_start without a typed content_block")
        if self._held is not None:
            raise FormatError("a content block started before the open tool-use block stopped")
        if not is_tool_call_block(block["type"]):
            return [ev]
        self._held = _Held(index, block, [ev])
        return []

    def _delta(self, ev: SSEEvent, obj: Json) -> list[SSEEvent]:
        held = self._held
        if held is None:
            return [ev]
        if _index(obj) != held.index:
            raise FormatError("content_block_delta for another block while a tool call is open")
        held.events.append(ev)
        delta = obj.get("delta")
        if isinstance(delta, dict) and delta.get("type") == "input_json_delta":
            part = delta.get("partial_json")
            if isinstance(part, str):
                held.parts.append(part)
                return []
        held.foreign_delta = True
        return []

    def _release(self, stop: SSEEvent | None) -> list[SSEEvent]:
        held = self._held
        assert held is not None
        self._held = None
        text = "".join(held.parts)
        # Like the SDKs: streamed JSON, when there is any, replaces the start block's input.
        args = parse_arguments(text) if text else held.block.get("input")
        if held.foreign_delta:
            args = None
        call = block_tool_call(held.block, held.index, args)
        verdict = self._decide(call)
        self.verdicts.append((call, verdict))
        if verdict.allow:
            if held.block["type"] == "tool_use":
                self._allowed += 1
            return held.events if stop is None else [*held.events, stop]
        self._denied += 1
        if self._mode == "error":
            self.failure = (call, verdict)
            return []
        return text_block_events(held.index, denial_text(call, verdict))

    def _message_delta(self, ev: SSEEvent, obj: Json) -> list[SSEEvent]:
        out = self._release(None) if self._held is not None else []
        if self.failure is not None:
            return []
        self.usage = usage_from(obj.get("usage"), self.usage)
        delta = obj.get("delta")
        if (
            isinstance(delta, dict)
            and delta.get("stop_reason") == "tool_use"
            and self._denied
            and not self._allowed
        ):
            new = dict(obj)
            new["delta"] = {**delta, "stop_reason": "end_turn"}
            ev = SSEEvent(orjson.dumps(new).decode(), ev.event, ev.id, ev.retry)
        out.append(ev)
        return out


def text_block_events(index: int, text: str) -> list[SSEEvent]:
    """A complete text block at `index`: start, one text_delta, stop."""
    start = {
        "type": "content_block_start",
        "index": index,
        "content_block": {"type": "text", "text": ""},
    }  # noqa: E501
    delta = {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }  # noqa: E501
    stop = {"type": "content_block_stop", "index": index}
    return [
        SSEEvent(orjson.dumps(start).decode(), "content_block_start"),
        SSEEvent(orjson.dumps(delta).decode(), "content_block_delta"),
        SSEEvent(orjson.dumps(stop).decode(), "content_block_stop"),
    ]


def _index(obj: Json) -> int:
    index = obj.get("index")
    if type(index) is not int:
        raise FormatError(f"{obj.get('type')} needs an integer 'index'")
    return index
