"""OpenAI Chat Completions streams: content flows at once, tool calls wait for their verdict.

A tool call has no end marker of its own and indexes may interleave, so fragments are held
per (choice, index) until that choice's finish_reason (or [DONE] / end of stream). Released
calls are renumbered densely: clients place fragments by `index` into a list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from gateway.formats.canonical import (
    FormatError,
    GateMode,
    Json,
    ToolCall,
    Usage,
    Verdict,
    denial_text,
    loads_object,
)
from gateway.formats.openai_chat.response import LEGACY_INDEX, make_tool_call, usage_from
from gateway.upstream.sse import SSEEvent

__all__ = ["StreamGate"]

_CALL_FINISH = frozenset({"tool_calls", "function_call"})


@dataclass(slots=True)
class _Call:
    index: int
    id: str = ""
    name: str = ""
    kind: str | None = None
    parts: list[str] = field(default_factory=list)
    broken: bool = False  # a fragment we could not read: the call is denied


class StreamGate:
    """Feed upstream events, forward what feed()/close() return. One gate per response stream.

    `strip_usage_chunk`: drop the include_usage chunk (after reading it) when the gateway,
    not the client, asked for it. After a denial in mode "error" `failure` is set and nothing
    more is returned: the caller ends the stream with errors.stream_error_events().
    """

    def __init__(
        self,
        decide: Callable[[ToolCall], Verdict],
        mode: GateMode = "redact",
        *,
        strip_usage_chunk: bool = False,
    ) -> None:
        self._decide = decide
        self._mode = mode
        self._strip_usage = strip_usage_chunk
        self._calls: dict[int, dict[int, _Call]] = {}  # choice -> index -> call
        self._frags: dict[int, list[tuple[int, Json]]] = {}  # choice -> fragments as they came
        self._texted: set[int] = set()  # choices that have streamed content already
        self._template: Json = {}
        self.usage = Usage()
        self.verdicts: list[tuple[ToolCall, Verdict]] = []
        self.failure: tuple[ToolCall, Verdict] | None = None

    def feed(self, ev: SSEEvent) -> list[SSEEvent]:
        """One upstream event in; the events to send to the client now, in order."""
        if self.failure is not None:
            return []
        if ev.comment is not None:
            return [ev]
        if ev.data == "[DONE]":
            return [*self._flush(), ev]
        obj = loads_object(ev.data, "upstream stream chunk")
        if isinstance(obj.get("usage"), dict):
            self.usage = usage_from(obj["usage"])
        choices = obj.get("choices")
        if choices is None:
            return [ev]  # an error object or a provider extension: no tool call in it
        if not isinstance(choices, list):
            raise FormatError("upstream chunk 'choices' must be a list")
        if not choices:
            return [] if self._strip_usage and isinstance(obj.get("usage"), dict) else [ev]
        self._template = {k: v for k, v in obj.items() if k != "choices"}
        if "usage" in self._template:
            self._template["usage"] = None
        return self._chunk(ev, obj, choices)

    def close(self) -> list[SSEEvent]:
        """Upstream ended. Calls still held are decided now; incomplete input is denied."""
        return self._flush()

    def _chunk(self, ev: SSEEvent, obj: Json, choices: list[object]) -> list[SSEEvent]:
        residual: list[Json] = []
        finishing: list[tuple[int, Json]] = []
        changed = False
        for ch in choices:
            if not isinstance(ch, dict) or not isinstance(ch.get("delta"), dict):
                raise FormatError("upstream chunk choice needs a 'delta' object")
            number = ch.get("index", 0)
            if type(number) is not int:
                raise FormatError("upstream chunk choice 'index' must be an integer")
            delta = ch["delta"]
            if delta.get("content"):
                self._texted.add(number)
            held = self._absorb(number, delta)
            ends = ch.get("finish_reason") is not None and number in self._calls
            if not held and not ends:
                residual.append(ch)
                continue
            changed = True
            rest = {k: v for k, v in delta.items() if k not in ("tool_calls", "function_call")}
            keep = any(v is not None for v in rest.values()) or ch.get("logprobs") is not None
            if ends:
                finishing.append((number, ch))
            if keep:  # role, content, refusal... still flow; finish_reason waits for the calls
                residual.append({**ch, "delta": rest, "finish_reason": None})
        if not changed:
            return [ev]
        out = [self._event({**obj, "choices": residual})] if residual else []
        for number, ch in finishing:
            out += self._finish(number, ch)
            if self.failure is not None:
                return []
        return out

    def _absorb(self, number: int, delta: Json) -> bool:
        """Hold the tool-call fragments of one choice delta; True when there were any."""
        frags = delta.get("tool_calls")
        legacy = delta.get("function_call")
        if frags is None and legacy is None:
            return False
        if frags is not None and not isinstance(frags, list):
            raise FormatError("upstream delta 'tool_calls' must be a list")
        calls = self._calls.setdefault(number, {})
        order = self._frags.setdefault(number, [])
        for frag in frags or []:
            if not isinstance(frag, dict) or type(frag.get("index")) is not int:
                raise FormatError("upstream tool_calls fragment needs an integer 'index'")
            call = calls.setdefault(frag["index"], _Call(frag["index"]))
            _merge(call, frag, frag.get("function"))
            order.append((frag["index"], frag))
        if legacy is not None:
            call = calls.setdefault(LEGACY_INDEX, _Call(LEGACY_INDEX, kind="function"))
            _merge(call, {}, legacy)
            order.append((LEGACY_INDEX, legacy))
        return True

    def _finish(self, number: int, ch: Json | None) -> list[SSEEvent]:
        calls = self._calls.pop(number, {})
        order = self._frags.pop(number, [])
        allowed: list[int] = []
        texts: list[str] = []
        for call in calls.values():
            tool_call = _to_tool_call(call, number)
            verdict = self._decide(tool_call)
            self.verdicts.append((tool_call, verdict))
            if verdict.allow:
                allowed.append(call.index)
            elif self._mode == "error":
                self.failure = (tool_call, verdict)
                return []
            else:
                texts.append(denial_text(tool_call, verdict))
        renumber = {old: new for new, old in enumerate(sorted(i for i in allowed if i >= 0))}
        out = [
            self._delta_event(number, _released(i, f, renumber)) for i, f in order if i in allowed
        ]
        for text in texts:
            sep = "\n\n" if number in self._texted else ""
            self._texted.add(number)
            out.append(self._delta_event(number, {"content": sep + text}))
        if ch is not None:
            reason = ch.get("finish_reason")
            if reason in _CALL_FINISH and not allowed:
                reason = "stop"
            final = {**self._template, "choices": [{**ch, "delta": {}, "finish_reason": reason}]}
            out.append(self._event(final))
        return out

    def _flush(self) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        for number in list(self._calls):
            out += self._finish(number, None)
            if self.failure is not None:
                return []
        return out

    def _delta_event(self, number: int, delta: Json) -> SSEEvent:
        choice = {"index": number, "delta": delta, "logprobs": None, "finish_reason": None}
        return self._event({**self._template, "choices": [choice]})

    @staticmethod
    def _event(obj: Json) -> SSEEvent:
        return SSEEvent(orjson.dumps(obj).decode())


def _merge(call: _Call, frag: Json, function: object) -> None:
    """Accumulate like the openai SDK does: strings concatenate, `type` is replaced."""
    if isinstance(frag.get("id"), str):
        call.id += frag["id"]
    if frag.get("type") is not None:
        call.kind = frag["type"]
    inner = frag.get(call.kind) if call.kind == "custom" else function
    if inner is None:
        return
    if not isinstance(inner, dict):
        call.broken = True
        return
    if isinstance(inner.get("name"), str):
        call.name += inner["name"]
    piece = inner.get("input" if call.kind == "custom" else "arguments")
    if isinstance(piece, str):
        call.parts.append(piece)
    elif piece is not None:
        call.broken = True


def _to_tool_call(call: _Call, number: int) -> ToolCall:
    tool_call = make_tool_call(
        call.kind, call.name, "".join(call.parts), call.id, call.index, number
    )
    if call.broken:
        return ToolCall(tool_call.id, tool_call.name, None, tool_call.index, number)
    return tool_call


def _released(index: int, frag: Json, renumber: dict[int, int]) -> Json:
    if index == LEGACY_INDEX:
        return {"function_call": frag}
    return {"tool_calls": [{**frag, "index": renumber[index]}]}
