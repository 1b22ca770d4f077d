"""Anthropic Messages requests: validate, extract the canonical view, edit tools surgically."""

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
)

__all__ = [
    "active_skill",
    "edit_tools",
    "offered_tools",
    "parse_request",
    "request_view",
    "tool_choice",
    "with_tools",
    "working_directory",
]

# Block types that carry no tool call. `tool_use` and `*_tool_use` carry one; `*_tool_result`
# are results. Anything else is unknown and refused: it could carry a call we cannot see.
_PASSIVE_BLOCKS = frozenset(
    {"text", "image", "document", "search_result", "thinking", "redacted_thinking",
     "container_upload", "compaction", "tool_reference"}
)  # fmt: skip
_ROLES = frozenset({"user", "assistant", "system"})
_CHOICE_MODES = frozenset({"auto", "any", "none", "tool"})


def parse_request(raw: bytes) -> RequestView:
    """Parse and validate a /v1/messages (or count_tokens) body; FormatError when malformed."""
    return request_view(loads_object(raw, "request body"))


def request_view(body: Json) -> RequestView:
    """The view of a parsed request body; FormatError when malformed."""
    model = body.get("model")
    if not isinstance(model, str):
        raise FormatError("'model' must be a string")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise FormatError("'stream' must be a boolean")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and type(max_tokens) is not int:
        raise FormatError("'max_tokens' must be an integer")
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
    """`tools[].name`, plus `mcp__<server>` for each MCP connector server (they offer tools too)."""
    offers = [ToolOffer(t["name"]) for t in _objects(body, "tools")]
    offers += [ToolOffer(f"mcp__{s['name']}") for s in _objects(body, "mcp_servers")]
    return tuple(offers)


def tool_choice(body: Json) -> ToolChoice | None:
    """The normalised tool_choice, or None when absent."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if not isinstance(choice, dict) or choice.get("type") not in _CHOICE_MODES:
        raise FormatError("'tool_choice' must be an object with type auto, any, none or tool")
    mode = choice["type"]
    if mode != "tool":
        return ToolChoice(mode)
    name = choice.get("name")
    if not isinstance(name, str):
        raise FormatError("'tool_choice' of type tool needs a string 'name'")
    return ToolChoice("tool", name)


def active_skill(body: Json) -> SkillInvocation | None:
    """The latest `Skill` tool_use since the last human turn (messages must be validated)."""
    for msg in reversed(body["messages"]):
        content = msg["content"]
        role = msg["role"]
        if role == "user":
            # A user message that answers tool calls continues the agent loop; Claude Code
            # merges the skill's own text and system reminders into it, so it is no human turn.
            if isinstance(content, str) or not any(b["type"] == "tool_result" for b in content):
                return None
        elif role == "assistant" and isinstance(content, list):
            for block in reversed(content):
                found = _skill_call(block)
                if found is not None:
                    return found
    return None


def working_directory(body: Json) -> str | None:
    """The working directory stated in the top-level system prompt (never from messages)."""
    system = body.get("system")
    if isinstance(system, str):
        return find_working_directory(system)
    if isinstance(system, list):
        for block in system:
            if isinstance(block, dict) and isinstance(text := block.get("text"), str):
                found = find_working_directory(text)
                if found is not None:
                    return found
    return None


def edit_tools(
    body: Json, kept: Collection[str], tool_choice: object = ToolChoiceEdit.KEEP
) -> Json:
    """A shallow copy of `body`: only kept tools (and MCP servers), tool_choice edited."""
    new = dict(body)
    if isinstance(tools := body.get("tools"), list):
        new["tools"] = [t for t in tools if t["name"] in kept]
    if isinstance(servers := body.get("mcp_servers"), list):
        new["mcp_servers"] = [s for s in servers if f"mcp__{s['name']}" in kept]
    apply_tool_choice_edit(new, tool_choice)
    return new


def with_tools(
    body: Json, kept: Collection[str], tool_choice: object = ToolChoiceEdit.KEEP
) -> bytes:
    """edit_tools() serialised: every other key keeps its value and its order."""
    return orjson.dumps(edit_tools(body, kept, tool_choice))


def _objects(body: Json, key: str) -> list[Json]:
    items = body.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise FormatError(f"'{key}' must be a list")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise FormatError(f"every entry of '{key}' must be an object with a string 'name'")
    return items


def _check_messages(messages: object) -> None:
    if not isinstance(messages, list):
        raise FormatError("'messages' must be a list")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in _ROLES:
            raise FormatError(
                f"messages[{i}] must be an object with role user, assistant or system"
            )
        content = msg.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise FormatError(f"messages[{i}].content must be a string or a list")
        for j, block in enumerate(content):
            _check_block(block, f"messages[{i}].content[{j}]")


def _check_block(block: object, where: str) -> None:
    if not isinstance(block, dict) or not isinstance(kind := block.get("type"), str):
        raise FormatError(f"{where} must be an object with a string 'type'")
    if kind in _PASSIVE_BLOCKS or kind.endswith("_tool_result") or kind == "tool_result":
        return
    if kind == "tool_use" or kind.endswith("_tool_use"):
        if not isinstance(block.get("name"), str):
            raise FormatError(f"{where} ({kind}) needs a string 'name'")
        return
    raise FormatError(f"{where} has unknown content block type {kind!r}")


def _skill_call(block: Any) -> SkillInvocation | None:
    if block["type"] != "tool_use" or block["name"] != "Skill":
        return None
    args = block.get("input")
    # A call without a skill name invoked nothing (Claude Code rejects it): look further back.
    if not isinstance(args, dict) or not isinstance(skill := args.get("skill"), str) or not skill:
        return None
    extra = args.get("args")
    call_id = block.get("id")
    return SkillInvocation(
        skill,
        extra if isinstance(extra, str) else None,
        call_id if isinstance(call_id, str) else "",
    )
