"""OpenAI Chat Completions (`POST /v1/chat/completions`): requests, responses, streams, errors."""

from gateway.formats.openai_chat.errors import (
    error_body,
    error_type,
    rerender_upstream_error,
    stream_error_events,
)
from gateway.formats.openai_chat.request import (
    active_skill,
    edit_tools,
    offered_tools,
    parse_request,
    request_view,
    tool_choice,
    with_include_usage,
    with_tools,
    working_directory,
)
from gateway.formats.openai_chat.response import (
    LEGACY_INDEX,
    apply_verdicts,
    check_response,
    parse_response,
    tool_calls,
    usage,
)
from gateway.formats.openai_chat.stream import StreamGate

__all__ = [
    "LEGACY_INDEX",
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
    "stream_error_events",
    "tool_calls",
    "tool_choice",
    "usage",
    "with_include_usage",
    "with_tools",
    "working_directory",
]
