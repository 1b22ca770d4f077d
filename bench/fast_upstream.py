"""A fast local provider for the gateway bench (aiohttp.web on uvloop, its own process).

Replies are prebuilt bytes, picked by cheap byte tests on the request body (no JSON parse,
so the upstream's CPU stays small next to what is measured):

- POST /v1/messages, no ``"stream":true``: an Anthropic Message with text and a tool_use;
- POST /v1/messages with ``"stream":true``: the same as an SSE stream, written at once;
  if the body also holds ``bench-paced``: the first event at once, then one per 50 ms;
- POST /v1/chat/completions: an OpenAI chat completion with one tool call.

    python -m bench.fast_upstream   # prints "PORT <n>", serves until SIGTERM
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import uvloop
from aiohttp import web

from bench.serve import bound_socket

__all__ = ["PACE_S", "anthropic_events"]

PACE_S = 0.05
_TOOL = {"command": "git status", "description": "Show working tree status"}
_USAGE = {"input_tokens": 42, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def _sse(data: dict[str, Any]) -> bytes:
    kind: str = data["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def anthropic_events() -> list[bytes]:
    """message_start, a text block, an (allowed) Bash tool_use block, message_delta/stop."""
    message: dict[str, Any] = {
        "id": "msg_01bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-8",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**_USAGE, "output_tokens": 1},
    }
    tool = {"type": "tool_use", "id": "toolu_01bench", "name": "Bash", "input": {}}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "On it."},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": tool},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": orjson.dumps(_TOOL).decode()},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 17},
        },
        {"type": "message_stop"},
    ]
    return [_sse(e) for e in events]


_MESSAGE = orjson.dumps(
    {
        "id": "msg_01bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-8",
        "content": [
            {"type": "text", "text": "Checking the working tree."},
            {"type": "tool_use", "id": "toolu_01bench", "name": "Bash", "input": _TOOL},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {**_USAGE, "output_tokens": 17},
    }
)
_CHAT = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-bench",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_bench",
                            "type": "function",
                            "function": {"name": "Bash", "arguments": orjson.dumps(_TOOL).decode()},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59},
    }
)
_EVENTS = anthropic_events()
_STREAM = b"".join(_EVENTS)
_SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}


async def messages(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    if b'"stream":true' not in body:
        return web.Response(body=_MESSAGE, content_type="application/json")
    if b"bench-paced" not in body:
        return web.Response(body=_STREAM, headers=_SSE_HEADERS)
    resp = web.StreamResponse(headers=_SSE_HEADERS)
    await resp.prepare(request)
    for i, event in enumerate(_EVENTS):
        if i:
            await asyncio.sleep(PACE_S)
        await resp.write(event)
    await resp.write_eof()
    return resp


async def chat(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_CHAT, content_type="application/json")


async def ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/ready", ready)
    sock = bound_socket()
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
