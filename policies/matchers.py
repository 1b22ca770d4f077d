"""The two Casbin matcher functions of ``model.conf`` and the request argument they read.

``tool_matches(r.tool, p.tool, p.kind)``: tool names compare **exactly as sent** (no case folding,
no trimming, no Unicode normalisation): ``bash``, ``Bash `` and ``Bash\\u200b`` are other tools.
The only aliases are the documented ones: ``Task`` for ``Agent``; Read rules (bare or scoped)
also serve ``Grep`` and ``Glob``; Edit rules also serve ``Write`` and ``NotebookEdit``. MCP rules:
``mcp__s`` covers ``mcp__s__<tool>`` at the ``__`` boundary only; ``mcp__s__t`` is one tool;
``mcp__s__get_*`` globs after the literal ``mcp__s__`` prefix. Unanchored globs never match.

``arg_matches(r.arg, p.kind, p.spec)``: ``r.arg`` is an :class:`Arg`, one already-normalised
value (one simple command, one absolute path, one host, one agent or skill name) plus the
anchors needed to resolve the rule's relative forms.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from policies.bash import pattern_matches
from policies.paths import Anchors, covers_subtree, path_matches
from policies.urls import host_matches

__all__ = ["Arg", "arg_matches", "smuggles_exec", "substitute_vars", "tool_matches"]

_SERVES = {
    "read": ("Read", "Grep", "Glob"),
    "edit": ("Edit", "Write", "NotebookEdit"),
    "agent": ("Agent", "Task"),
    "domain": ("WebFetch",),
    "skill": ("Skill",),
}
_BARE_SERVES = {"Read": _SERVES["read"], "Edit": _SERVES["edit"], "Agent": _SERVES["agent"]}
_MCP_ANCHOR = re.compile(r"(mcp__[A-Za-z0-9_-]+?__)([A-Za-z0-9_*-]*)\Z")


# Options that make an otherwise harmless program run another program or write files.
# A wildcard never covers them; a rule must spell them out (``Bash(git -c x=y log *)``).
_EXEC_OPTIONS = {
    "git": ("-c", "--config-env", "--upload-pack", "--receive-pack", "--exec"),
    "find": ("-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0",
             "-fprintf", "-fls"),
    "rg": ("--pre", "--pre-glob"),
    "tar": ("--to-command", "--checkpoint-action", "--use-compress-program", "-I"),
}  # fmt: skip
_QUOTES = str.maketrans("", "", "'\"\\")


@dataclass(frozen=True, slots=True)
class Arg:
    """One normalised request argument. ``subtree``: a directory whose whole tree is read."""

    value: str
    anchors: Anchors
    subtree: bool = False


@functools.lru_cache(maxsize=4096)
def _mcp_regex(rule_tool: str) -> re.Pattern[str] | None:
    if "*" not in rule_tool:
        if rule_tool.count("__") == 1:  # mcp__server: every tool of that server
            return re.compile(re.escape(rule_tool) + r"__.+\Z", re.DOTALL)
        return None
    match = _MCP_ANCHOR.match(rule_tool)
    if match is None or "*" in match.group(1):
        return None  # unanchored glob (mcp__*, mcp__s*): never allows anything
    tail = ".*".join(re.escape(part) for part in match.group(2).split("*"))
    return re.compile(re.escape(match.group(1)) + tail + r"\Z", re.DOTALL)


def tool_matches(request_tool: object, rule_tool: str, kind: str) -> bool:
    """Could a rule (tool, kind) apply to a call of ``request_tool``?"""
    if not isinstance(request_tool, str):
        return False
    if kind == "tool":
        if "*" in rule_tool:
            return False
        return request_tool == rule_tool or request_tool in _BARE_SERVES.get(rule_tool, ())
    if kind == "bash":
        return request_tool == rule_tool
    if kind == "mcp":
        if request_tool == rule_tool and "*" not in rule_tool:
            return True
        regex = _mcp_regex(rule_tool)
        return regex is not None and regex.match(request_tool) is not None
    return request_tool in _SERVES.get(kind, ())  # literal: never


def substitute_vars(spec: str, anchors: Anchors) -> str | None:
    """Substitute ``${CLAUDE_SKILL_DIR}``/``${CLAUDE_PROJECT_DIR}`` in a Bash pattern."""
    if "${" not in spec:
        return spec
    for var, value in (("CLAUDE_SKILL_DIR", anchors.skill_dir),
                       ("CLAUDE_PROJECT_DIR", anchors.project_dir)):  # fmt: skip
        token = "${" + var + "}"
        if token in spec:
            if not value or not value.startswith("/") or "*" in value:
                return None  # unknown anchor: the rule cannot match
            spec = spec.replace(token, value.rstrip("/") or "/")
    return spec


def arg_matches(arg: object, kind: str, spec: str) -> bool:
    """Does the rule's specifier allow this normalised argument?"""
    if kind in ("tool", "mcp"):
        return not spec
    if not isinstance(arg, Arg):
        return False
    if kind == "bash" or kind == "skill":
        pattern = substitute_vars(spec, arg.anchors)
        if pattern is None or not pattern_matches(arg.value, pattern):
            return False
        return kind == "skill" or not smuggles_exec(arg.value, pattern)
    if kind == "read" or kind == "edit":
        if arg.subtree and covers_subtree(arg.value, spec, arg.anchors):
            return True
        return path_matches(arg.value, spec, arg.anchors)
    if kind == "domain":
        return host_matches(arg.value, spec)
    if kind == "agent":
        return arg.value == spec
    return False  # literal and anything unknown


def smuggles_exec(command: str, pattern: str) -> bool:
    """Does a wildcard cover an option that runs another program (``git -c``, ``find -exec``)?"""
    words = command.translate(_QUOTES).split(" ")
    options = _EXEC_OPTIONS.get(words[0])
    if options is None:
        return False
    spelled = set(pattern.split(" "))
    for word in words[1:]:
        if word in spelled:
            continue
        for option in options:
            if (
                word == option
                or word.startswith(option + "=")
                or (option == "-c" and word.startswith("-c") and "=" in word)
            ):
                return True
    return False
