"""Anthropic Messages API (`POST /v1/messages`): requests, responses, streams and errors."""

from gateway.formats.anthropic_messages.errors import (
    error_body,
    error_type,
    rerender_upstream_error,
    stream_error_event,
)
from gateway.formats.anthropic_messages.request import (
    active_skill,
    edit_tools,
    offered_tools,
    parse_request,
    request_view,
    tool_choice,
    with_tools,
    working_directory,
)
from gateway.formats.anthropic_messages.response import (
    apply_verdicts,
    check_response,
    parse_response,
    tool_calls,
    usage,
)
from gateway.formats.anthropic_messages.stream import StreamGate

__all__ = [
    "StreamGate",
    "active_skill",
    "apply_verdicts",
    "edit_tools",
    "error_body",
    "error_type",
    "offered_tools",
    "parse_request",
    "request_view",
    "check_response",
    "parse_response",
    "rerender_upstream_error",
    "stream_error_event",
    "tool_calls",
    "tool_choice",
    "usage",
    "with_tools",
    "working_directory",
]
