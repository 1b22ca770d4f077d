"""OpenAI Chat Completions requests: validate, extract the canonical view, edit tools surgically.

Tools come as `tools[]` (type function or custom) and as the legacy `functions[]`; tool calls
in the history as `tool_calls[]` and the legacy `function_call`. All of them are read.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from gateway.formats.canonical import (
    FormatError,
    Json,
    RequestView,
    SkillInvocation,
    ToolChoice,
    ToolChoiceEdit,
    ToolOffer,
    apply_tool_choice_edit,
    find_working_directory,
    loads_object,
    parse_arguments,
)

__all__ = [
    "active_skill",
    "edit_tools",
    "offered_tools",
    "parse_request",
    "request_view",
    "tool_choice",
    "with_include_usage",
    "with_tools",
    "working_directory",
]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_CHOICE_STRINGS = {"none": "none", "auto": "auto", "required": "any"}
_TOOL_TYPES = frozenset({"function", "custom"})


def parse_request(raw: bytes) -> RequestView:
    """Parse and validate a /v1/chat/completions body; FormatError when malformed."""
    return request_view(loads_object(raw, "request body"))


def request_view(body: Json) -> RequestView:
    """The view of a parsed request body; FormatError when malformed."""
    model = body.get("model")
    if not isinstance(model, str):
        raise FormatError("'model' must be a string")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise FormatError("'stream' must be a boolean")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and type(max_tokens) is not int:
        raise FormatError("'max_completion_tokens' / 'max_tokens' must be an integer")
    _check_messages(body.get("messages"))
    return RequestView(
        body=body,
        model=model,
        stream=stream,
        max_tokens=max_tokens,
        tools=offered_tools(body),
        tool_choice=tool_choice(body),
        skill=active_skill(body),
        cwd=working_directory(body),
    )


def offered_tools(body: Json) -> tuple[ToolOffer, ...]:
    """Names of `tools[]` (function and custom) and of the legacy `functions[]`."""
    offers = [ToolOffer(_tool_name(t)) for t in _list(body, "tools")]
    for f in _list(body, "functions"):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise FormatError("every entry of 'functions' must be an object with a string 'name'")
        offers.append(ToolOffer(f["name"]))
    return tuple(offers)


def tool_choice(body: Json) -> ToolChoice | None:
    """The normalised tool_choice (or legacy function_call), None when absent."""
    choice = body.get("tool_choice", body.get("function_call"))
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in _CHOICE_STRINGS:
            raise FormatError("'tool_choice' must be none, auto, required or an object")
        return ToolChoice(_CHOICE_STRINGS[choice])  # type: ignore[arg-type]
    if not isinstance(choice, dict):
        raise FormatError("'tool_choice' must be a string or an object")
    if choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        mode = allowed.get("mode") if isinstance(allowed, dict) else None
        if mode not in ("auto", "required"):
            raise FormatError("'tool_choice.allowed_tools.mode' must be auto or required")
        return ToolChoice("any" if mode == "required" else "auto")
    if "type" not in choice and isinstance(choice.get("name"), str):  # legacy {"name": ...}
        return ToolChoice("tool", choice["name"])
    return ToolChoice("tool", _tool_name(choice))


def active_skill(body: Json) -> SkillInvocation | None:
    """The latest `Skill` tool call since the last user message (messages must be validated)."""
    for msg in reversed(body["messages"]):
        role = msg["role"]
        if role == "user":  # tool results come as role "tool", so every user message is human
            return None
        if role != "assistant":
            continue
        calls = msg.get("tool_calls") or []
        legacy = msg.get("function_call")
        if legacy is not None:
            calls = [*calls, {"type": "function", "id": "", "function": legacy}]
        for call in reversed(calls):
            found = _skill_call(call)
            if found is not None:
                return found
    return None


def working_directory(body: Json) -> str | None:
    """The working directory stated in a system or developer message, never elsewhere."""
    for msg in body["messages"]:
        if msg["role"] not in ("system", "developer"):
            continue
        content = msg.get("content")
        texts = [content] if isinstance(content, str) else content or []
        for part in texts:
            text = part if isinstance(part, str) else part.get("text")
            if isinstance(text, str) and (found := find_working_directory(text)) is not None:
                return found
    return None


def edit_tools(
    body: Json, kept: Collection[str], tool_choice: object = ToolChoiceEdit.KEEP
) -> Json:
    """A shallow copy of `body` with only the kept tools; tool_choice edited.

    OpenAI refuses an empty `tools` list, and tool_choice / parallel_tool_calls without tools:
    when nothing is kept those keys go too (likewise `functions` / `function_call`).
    """
    new = dict(body)
    if isinstance(tools := body.get("tools"), list):
        new["tools"] = [t for t in tools if _tool_name(t) in kept]
        choice = new.get("tool_choice")
        if isinstance(choice, dict) and isinstance(allowed := choice.get("allowed_tools"), dict):
            listed = allowed.get("tools") or []
            kept_listed = [t for t in listed if _tool_name(t) in kept]
            new["tool_choice"] = {**choice, "allowed_tools": {**allowed, "tools": kept_listed}}
        if not new["tools"]:
            for key in ("tools", "tool_choice", "parallel_tool_calls"):
                new.pop(key, None)
    if isinstance(functions := body.get("functions"), list):
        new["functions"] = [f for f in functions if f["name"] in kept]
        if not new["functions"]:
            new.pop("functions")
            new.pop("function_call", None)
    apply_tool_choice_edit(new, tool_choice)
    return new


def with_tools(
    body: Json, kept: Collection[str], tool_choice: object = ToolChoiceEdit.KEEP
) -> bytes:
    """edit_tools() serialised: every other key keeps its value and its order."""
    return orjson.dumps(edit_tools(body, kept, tool_choice))


def with_include_usage(body: Json) -> tuple[Json, bool]:
    """Ask for the usage chunk on a stream; True when the gateway added it (strip it again)."""
    options = body.get("stream_options")
    if not body.get("stream") or (isinstance(options, dict) and options.get("include_usage")):
        return body, False
    new = dict(body)
    new["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    return new, True


def _list(body: Json, key: str) -> list[Any]:
    items = body.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise FormatError(f"'{key}' must be a list")
    return items


def _tool_name(tool: object) -> str:
    """`{"type":"function","function":{"name"}}` or `{"type":"custom","custom":{"name"}}`."""
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind not in _TOOL_TYPES:
        raise FormatError(f"unknown tool type {kind!r}: expected function or custom")
    assert isinstance(tool, dict)
    inner = tool.get(kind)
    name = inner.get("name") if isinstance(inner, dict) else None
    if not isinstance(name, str):
        raise FormatError(f"a {kind} tool needs a string '{kind}.name'")
    return name


def _check_messages(messages: object) -> None:
    if not isinstance(messages, list):
        raise FormatError("'messages' must be a list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise FormatError(f"messages[{i}] must be an object with a known role")
        content = msg.get("content")
        if content is not None and not isinstance(content, str | list):
            raise FormatError(f"messages[{i}].content must be a string, a list or null")
        if isinstance(content, list) and not all(
            isinstance(p, dict) and isinstance(p.get("type"), str) for p in content
        ):
            raise FormatError(f"messages[{i}].content parts must be objects with a string 'type'")
        calls = msg.get("tool_calls")
        if calls is not None and (msg["role"] != "assistant" or not isinstance(calls, list)):
            raise FormatError(f"messages[{i}].tool_calls must be a list on an assistant message")
        for call in calls or []:
            _tool_name(call)  # unknown call types could hide a tool call: refuse them
        legacy = msg.get("function_call")
        if legacy is not None and not (
            isinstance(legacy, dict) and isinstance(legacy.get("name"), str)
        ):
            raise FormatError(f"messages[{i}].function_call needs a string 'name'")


def _skill_call(call: Json) -> SkillInvocation | None:
    if call.get("type") != "function" or call["function"].get("name") != "Skill":
        return None
    arguments = call["function"].get("arguments")
    args = parse_arguments(arguments) if isinstance(arguments, str) else None
    # A call without a skill name invoked nothing: look further back.
    if args is None or not isinstance(skill := args.get("skill"), str) or not skill:
        return None
    extra = args.get("args")
    call_id = call.get("id")
    return SkillInvocation(
        skill,
        extra if isinstance(extra, str) else None,
        call_id if isinstance(call_id, str) else "",
    )
