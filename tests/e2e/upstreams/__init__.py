"""Scripted Anthropic and OpenAI upstreams for e2e and unit tests.

    async with ScriptedAnthropic() as up:
        up.enqueue(sse_reply(anthropic_tool_use_stream([("Bash", {"command": "git status"})])))
        ... point the gateway (or an SDK) at up.url ...
        assert up.last.headers["x-api-key"] == "sk-provider"

Pytest fixtures live in ``tests.e2e.upstreams.fixtures`` (import them in a conftest).
"""

from .anthropic_api import (
    anthropic_error,
    anthropic_error_body,
    anthropic_error_event,
    anthropic_message,
    anthropic_stream,
    anthropic_text_stream,
    anthropic_tool_use_stream,
)
from .openai_api import (
    openai_completion,
    openai_error,
    openai_error_body,
    openai_text_stream,
    openai_tool_calls_stream,
)
from .replies import (
    Reply,
    drop_connection,
    html_reply,
    json_reply,
    malformed_json_reply,
    raw_reply,
    sse_event,
    sse_raw_reply,
    sse_reply,
)
from .server import (
    RecordedRequest,
    ScriptedAnthropic,
    ScriptedOpenAI,
    ScriptedUpstream,
    refusing_port,
)

__all__ = [
    "RecordedRequest",
    "Reply",
    "ScriptedAnthropic",
    "ScriptedOpenAI",
    "ScriptedUpstream",
    "anthropic_error",
    "anthropic_error_body",
    "anthropic_error_event",
    "anthropic_message",
    "anthropic_stream",
    "anthropic_text_stream",
    "anthropic_tool_use_stream",
    "drop_connection",
    "html_reply",
    "json_reply",
    "malformed_json_reply",
    "openai_completion",
    "openai_error",
    "openai_error_body",
    "openai_text_stream",
    "openai_tool_calls_stream",
    "raw_reply",
    "refusing_port",
    "sse_event",
    "sse_raw_reply",
    "sse_reply",
]
