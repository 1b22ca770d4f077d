"""The canonical view policy reads: small frozen facts extracted from any wire format.

Not a canonical message model: bodies stay in their own format and are edited surgically.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = [
    "RequestView",
    "FormatError",
    "GateMode",
    "Json",
    "SkillInvocation",
    "ToolCall",
    "ToolChoice",
    "ToolChoiceEdit",
    "ToolOffer",
    "Usage",
    "Verdict",
    "apply_tool_choice_edit",
    "as_int",
    "denial_text",
    "find_working_directory",
    "loads_object",
    "parse_arguments",
]

# A parsed JSON object as orjson returns it. Shapes are checked where they are read.
Json = dict[str, Any]
GateMode = Literal["redact", "error"]


class FormatError(ValueError):
    """Input that does not have the shape its wire format requires (fail closed: refuse it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class ToolOffer:
    """A tool the request offers the model (Anthropic `tools[]`, OpenAI `tools[].function`)."""

    name: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model made. `input` is None when its arguments are not a JSON object."""

    id: str
    name: str
    input: dict[str, Any] | None
    index: int
    choice: int = 0  # OpenAI `n` > 1: which choice the call belongs to

    @property
    def malformed(self) -> bool:
        return self.input is None


@dataclass(frozen=True, slots=True)
class SkillInvocation:
    """The most recent `Skill` tool call since the last human turn."""

    skill: str
    args: str | None = None
    call_id: str = ""


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """tool_choice, normalised: `tool` forces `name`; `any` forces some tool."""

    mode: Literal["auto", "any", "none", "tool"]
    name: str | None = None

    @property
    def forced_tool(self) -> str | None:
        return self.name if self.mode == "tool" else None


class ToolChoiceEdit(enum.Enum):
    """with_tools(): leave tool_choice as it is, or remove it. Any other value replaces it."""

    KEEP = "keep"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class RequestView:
    """A validated request body (either format) and what policy reads from it.

    Treat `body` as read-only: edits go through the format's with_tools().
    """

    body: Json
    model: str
    stream: bool
    max_tokens: int | None
    tools: tuple[ToolOffer, ...]
    tool_choice: ToolChoice | None
    skill: SkillInvocation | None
    cwd: str | None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as the provider reported it (0 when not reported)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's answer for one tool call; `rule` names the rule that decided."""

    allow: bool
    rule: str | None = None
    reason: str = ""


def denial_text(call: ToolCall, verdict: Verdict) -> str:
    """The text that replaces a denied tool call: says plainly that the gateway denied it."""
    rule = f" (rule: {verdict.rule})" if verdict.rule else ""
    reason = f": {verdict.reason}" if verdict.reason else "."
    return f"[Skillwarden] The tool call {call.name} was denied by the gateway policy{rule}{reason}"


def as_int(value: object) -> int:
    """A usage counter as an int; anything else (null, absent, bool) counts as 0."""
    return value if type(value) is int else 0


def loads_object(raw: bytes | str, what: str) -> Json:
    """Parse a JSON object (orjson: strict UTF-8, no NaN, bounded depth) or raise FormatError."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FormatError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FormatError(f"{what} must be a JSON object")
    return value


def parse_arguments(text: str) -> dict[str, Any] | None:
    """Tool-call arguments as a JSON object, or None when malformed (the call is then denied)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# Claude Code states it in its system prompt as " - Primary working directory: /path".
_CWD_PHRASE = "Primary working directory:"
_CWD = re.compile(r"^[ \t]*(?:-[ \t]*)?Primary working directory:[ \t]*(\S[^\r\n]*?)[ \t]*$", re.M)


def find_working_directory(text: str) -> str | None:
    """The first `Primary working directory: ...` line of a system prompt text, if any."""
    # The regex runs only on the lines that hold the phrase: searched over the whole prompt
    # (tens of KB, often UCS-2) it tried every line start, ~17 us per Claude Code request.
    pos = text.find(_CWD_PHRASE)
    while pos != -1:
        start = text.rfind("\n", 0, pos) + 1  # `^` under re.M: after a newline only
        end = text.find("\n", pos)
        end = len(text) if end == -1 else end
        m = _CWD.match(text, start, end)  # endpos: `$` matches at the line's end
        if m is not None:
            return m.group(1)
        pos = text.find(_CWD_PHRASE, end)
    return None


def apply_tool_choice_edit(body: Json, edit: object) -> None:
    """Apply a with_tools() tool_choice argument to a (copied) body in place."""
    if edit is ToolChoiceEdit.DROP:
        body.pop("tool_choice", None)
    elif edit is not ToolChoiceEdit.KEEP:
        body["tool_choice"] = edit
