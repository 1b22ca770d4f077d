"""The client format's functions in one table, so stages never branch on the format."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.formats import anthropic_messages as am
from gateway.formats import openai_chat as oc
from gateway.formats.canonical import (
    GateMode,
    Json,
    RequestView,
    ToolCall,
    ToolChoiceEdit,
    Usage,
    Verdict,
)
from gateway.pipeline.context import ClientFormat
from gateway.upstream.sse import SSEEvent

__all__ = ["ANTHROPIC", "OPENAI", "Gate", "RequestView", "Wire", "wire_for"]


class Gate(Protocol):
    """What both formats' StreamGate offer."""

    usage: Usage
    verdicts: list[tuple[ToolCall, Verdict]]
    failure: tuple[ToolCall, Verdict] | None

    def feed(self, ev: SSEEvent) -> list[SSEEvent]: ...
    def close(self) -> list[SSEEvent]: ...


@dataclass(frozen=True, slots=True)
class Wire:
    """One client format: how to read requests and responses, and how to refuse."""

    name: ClientFormat
    provider_kinds: frozenset[str]  # settings provider types that speak this format
    path_prefix: str  # what the client path loses before it is appended to base_url
    parse_request: Callable[[bytes], RequestView]
    request_view: Callable[[Json], RequestView]
    edit_tools: Callable[[Json, Collection[str], object], Json]
    check_response: Callable[[object], Json]
    tool_calls: Callable[[Json], tuple[ToolCall, ...]]
    apply_verdicts: Callable[[Json, Sequence[Verdict]], bytes]
    usage: Callable[[Json], Usage]
    error_body: Callable[[str, int, str], bytes]
    rerender_error: Callable[[int, bytes], bytes]
    stream_error: Callable[[str, int, str], list[SSEEvent]]
    end_event: str  # the event that ends a complete stream (its absence means it broke)

    def gate(self, decide: Callable[[ToolCall], Verdict], mode: GateMode, strip: bool) -> Gate:
        if self.name == "anthropic":
            return am.StreamGate(decide, mode)
        return oc.StreamGate(decide, mode, strip_usage_chunk=strip)

    def upstream_path(self, endpoint: str) -> str:
        return endpoint.removeprefix(self.path_prefix)

    def include_usage(self, body: Json) -> tuple[Json, bool]:
        """OpenAI streams: ask upstream for the usage chunk (True when the gateway added it)."""
        return oc.with_include_usage(body) if self.name == "openai" else (body, False)

    def drop_tool_choice(self, kept: Collection[str]) -> object:
        # Anthropic refuses tool_choice any/tool with no tools; OpenAI's edit drops it itself.
        return ToolChoiceEdit.DROP if not kept and self.name == "anthropic" else ToolChoiceEdit.KEEP


def _am_error(code: str, status: int, message: str) -> bytes:
    return am.error_body(code, status, message)


def _am_stream_error(code: str, status: int, message: str) -> list[SSEEvent]:
    return [am.stream_error_event(code, status, message)]


def _edit(fn: Callable[..., Json]) -> Callable[[Json, Collection[str], object], Json]:
    def edit(body: Json, kept: Collection[str], choice: object) -> Json:
        return fn(body, kept, choice)

    return edit


ANTHROPIC = Wire(
    name="anthropic",
    provider_kinds=frozenset({"anthropic"}),
    path_prefix="",
    parse_request=am.parse_request,
    request_view=am.request_view,
    edit_tools=_edit(am.edit_tools),
    check_response=am.check_response,
    tool_calls=am.tool_calls,
    apply_verdicts=am.apply_verdicts,
    usage=am.usage,
    error_body=_am_error,
    rerender_error=am.rerender_upstream_error,
    stream_error=_am_stream_error,
    end_event="message_stop",
)
# OpenAI base URLs carry the /v1 prefix by convention (https://api.openai.com/v1, vLLM's /v1).
OPENAI = Wire(
    name="openai",
    provider_kinds=frozenset({"openai", "openai_compatible"}),
    path_prefix="/v1",
    parse_request=oc.parse_request,
    request_view=oc.request_view,
    edit_tools=_edit(oc.edit_tools),
    check_response=oc.check_response,
    tool_calls=oc.tool_calls,
    apply_verdicts=oc.apply_verdicts,
    usage=oc.usage,
    error_body=oc.error_body,
    rerender_error=oc.rerender_upstream_error,
    stream_error=oc.stream_error_events,
    end_event="",  # OpenAI-compatible servers do not all send [DONE]
)


def wire_for(fmt: ClientFormat) -> Wire:
    return ANTHROPIC if fmt == "anthropic" else OPENAI
