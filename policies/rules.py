"""Parse one ``allowed-tools`` entry into a :class:`Rule` (pure, no I/O).

Grammar (Claude Code's rule syntax, parsed strictly; anything else is a ``RuleSyntaxError``):

- ``Tool``: a bare name allows every use of that tool (kind ``tool``). Names are ASCII letters,
  digits, ``_`` and ``-`` (``-`` because the Anthropic/OpenAI tool-name grammar allows it and MCP
  server names keep it), starting with a letter or ``_``. Anything else in a name (spaces,
  control, zero-width, fullwidth or Cyrillic look-alikes) is an error, never a silent rename.
- ``Tool(spec)``: one pair of parentheses, non-empty, no nested parentheses, no control or
  invisible format characters. ``Bash(*)`` is ``Bash``; ``WebFetch(domain:*)`` is ``WebFetch``;
  ``Agent(*)`` is ``Agent``.
- ``Bash``/``Monitor``: a command pattern (kind ``bash``); a trailing ``:*`` becomes `` *``
  (only at the very end; elsewhere ``:`` is literal).
- ``Read``: a path pattern (kind ``read``, also consulted for Grep and Glob calls);
  ``Edit``: kind ``edit`` (also consulted for Write and NotebookEdit calls and Bash redirects).
- ``WebFetch(domain:host-pattern)``: kind ``domain``, the specifier is the host pattern only,
  lowercased, trailing dot stripped, IDNA-encoded.
- ``Agent(name)`` / ``Task(name)``: kind ``agent``; ``Task`` is stored as ``Agent`` (the alias
  Claude Code keeps since 2.1.63); ``Skill(name)`` / ``Skill(name *)``: kind ``skill``.
- ``mcp__server`` (every tool of that server), ``mcp__server__tool`` (one tool),
  ``mcp__server__get_*`` (glob after a literal ``mcp__server__`` prefix): kind ``mcp``.
- ``${CLAUDE_SKILL_DIR}`` and ``${CLAUDE_PROJECT_DIR}`` stay in the specifier; the enforcer
  substitutes them at decision time from its context (unknown value -> the rule cannot match).

Decisions that are stricter than Claude Code (see ``rule_warnings`` for the registry warnings):

- kind ``literal`` = a specifier on a tool that has no specifier grammar we enforce
  (``TodoWrite(x)``, ``PowerShell(...)``, path rules on ``Write``/``NotebookEdit``/``Glob``/
  ``Grep``/``MultiEdit``/``LSP``, ``Tool(param:value)`` forms). Such a rule **never matches**:
  Claude Code either never consults it or honours it only in deny/ask lists, so honouring it in
  an allowlist would grant what the author never meant to grant. Grant writes with ``Edit(...)``.
- Unanchored tool-name globs (``*``, ``B*``, ``mcp__*``) parse but never allow anything.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "KINDS",
    "Rule",
    "RuleSyntaxError",
    "parse_rule",
    "policy_line",
    "render_rule",
    "rule_warnings",
    "split_allowed_tools",
]

KINDS = frozenset({"tool", "bash", "read", "edit", "domain", "mcp", "agent", "skill", "literal"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_GLOB_NAME = re.compile(r"[A-Za-z0-9_*-]+\Z")
_MCP = re.compile(r"mcp__([A-Za-z0-9_-]+?)(?:__([A-Za-z0-9_*-]+))?\Z")
_PARAM_VALUE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):")
_VAR = re.compile(r"\$\{([^}]*)\}")
_KNOWN_VARS = frozenset({"CLAUDE_SKILL_DIR", "CLAUDE_PROJECT_DIR"})
_MAX_ENTRY = 4096

# Tools whose specifier we enforce, and the kind it compiles to.
_SPEC_KIND = {"Bash": "bash", "Monitor": "bash", "Read": "read", "Edit": "edit",
              "Agent": "agent", "Skill": "skill"}  # fmt: skip
# Path rules Claude Code accepts but never consults (spec §2.5, §8 row 30).
_UNCONSULTED_PATH_TOOLS = frozenset({"Write", "NotebookEdit", "Glob", "Grep", "MultiEdit", "LSP"})
# Input fields per tool: `Tool(field:value)` is Claude Code's deny/ask-only form.
_FIELDS = {
    "Bash": {"command", "timeout", "description", "run_in_background", "dangerouslyDisableSandbox"},
    "Monitor": {"command", "ws", "description", "timeout_ms", "persistent"},
    "Read": {"file_path", "offset", "limit", "pages"},
    "Edit": {"file_path", "old_string", "new_string", "replace_all"},
    "WebFetch": {"url", "prompt"},
    "Agent": {"description", "prompt", "subagent_type", "model", "run_in_background", "name"},
    "Skill": {"skill", "args"},
}
# Runners that execute whatever follows them: a prefix rule on them allows anything.
_RUNNERS = ("devbox run", "direnv exec", "mise exec", "npx", "pnpx", "bunx", "docker exec",
            "docker run", "kubectl exec", "uv run", "poetry run", "pipx run", "nix run",
            "nix-shell", "env", "xargs", "sh", "bash", "zsh", "sudo", "su", "eval", "exec",
            "ssh", "watch", "timeout", "nice", "nohup", "setsid", "flock", "python", "python3",
            "node", "perl", "ruby")  # fmt: skip


class RuleSyntaxError(ValueError):
    """An allowed-tools entry that does not parse; ``entry`` and a short ``reason``."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"invalid allowed-tools entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Rule:
    """One parsed entry. ``specifier`` is None for a bare tool or an MCP rule."""

    raw: str
    tool: str
    specifier: str | None
    kind: str


def split_allowed_tools(value: str | Sequence[str]) -> list[str]:
    """Split an allowed-tools value into entries (paren-aware for strings)."""
    if isinstance(value, str):
        return _split_string(value)
    entries: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise RuleSyntaxError(repr(item), "list items must be strings")
        item = item.strip()
        if item:
            _check_balanced(item)
            entries.append(item)
    return entries


def _check_balanced(text: str) -> None:
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise RuleSyntaxError(text, "unbalanced parentheses")
    if depth:
        raise RuleSyntaxError(text, "unbalanced parentheses")


def _split_string(value: str) -> list[str]:
    entries: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in value:
        if depth == 0 and (ch.isspace() or ch == ","):
            if current:
                entries.append("".join(current))
                current = []
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise RuleSyntaxError(value, "unbalanced parentheses")
        current.append(ch)
    if depth:
        raise RuleSyntaxError(value, "unbalanced parentheses")
    if current:
        entries.append("".join(current))
    return entries


def _bad_char(text: str) -> str | None:
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn") or (ch.isspace() and ch != " "):
            return f"U+{ord(ch):04X}"
    return None


def parse_rule(entry: str) -> Rule:
    """Parse one allowed-tools entry; raise RuleSyntaxError when it is not a valid rule."""
    if not isinstance(entry, str) or not entry:
        raise RuleSyntaxError(str(entry), "empty entry")
    if len(entry) > _MAX_ENTRY:
        raise RuleSyntaxError(entry[:80], "entry too long")
    bad = _bad_char(entry)
    if bad:
        raise RuleSyntaxError(entry, f"control or invisible character {bad}")
    name, spec = _split_name(entry)
    if name.startswith("mcp__"):
        return _parse_mcp(entry, name, spec)
    if "*" in name:
        if spec is not None or not _GLOB_NAME.match(name):
            raise RuleSyntaxError(entry, "invalid tool-name glob")
        return Rule(entry, name, None, "tool")  # unanchored glob: never matches
    if not _NAME.match(name):
        raise RuleSyntaxError(entry, "tool name must be ASCII letters, digits, '_' or '-'")
    if name == "Task":
        name = "Agent"
    if spec is None:
        return Rule(entry, name, None, "tool")
    return _parse_scoped(entry, name, spec)


def _split_name(entry: str) -> tuple[str, str | None]:
    if "(" not in entry and ")" not in entry:
        return entry, None
    open_at = entry.find("(")
    if open_at <= 0 or not entry.endswith(")"):
        raise RuleSyntaxError(entry, "expected Tool or Tool(specifier)")
    spec = entry[open_at + 1 : -1]
    if "(" in spec or ")" in spec:
        raise RuleSyntaxError(entry, "nested parentheses")
    if not spec.strip():
        raise RuleSyntaxError(entry, "empty parentheses")
    if spec != spec.strip():
        raise RuleSyntaxError(entry, "leading or trailing space in specifier")
    return entry[:open_at], spec


def _parse_mcp(entry: str, name: str, spec: str | None) -> Rule:
    if spec is not None:
        raise RuleSyntaxError(entry, "MCP rules take no specifier")
    if name == "mcp__*":
        return Rule(entry, name, None, "mcp")  # unanchored: never matches, warned
    match = _MCP.match(name)
    if not match or "*" in match.group(1):
        raise RuleSyntaxError(entry, "expected mcp__server or mcp__server__tool")
    return Rule(entry, name, None, "mcp")


def _parse_scoped(entry: str, name: str, spec: str) -> Rule:
    param = _PARAM_VALUE.match(spec)
    if param and param.group(1) in _FIELDS.get(name, ()):
        return Rule(entry, name, spec, "literal")  # Tool(param:value): deny/ask-only form
    if name == "WebFetch":
        return _parse_webfetch(entry, spec)
    kind = _SPEC_KIND.get(name)
    if kind is None:
        return Rule(entry, name, spec, "literal")
    if kind == "bash":
        if spec.endswith(":*"):
            spec = spec[:-2] + " *"
        if spec == "*":
            return Rule(entry, name, None, "tool")
    elif kind == "agent" and spec == "*":
        return Rule(entry, name, None, "tool")
    return Rule(entry, name, spec, kind)


def _parse_webfetch(entry: str, spec: str) -> Rule:
    if not spec.startswith("domain:"):
        raise RuleSyntaxError(entry, "WebFetch rules must be WebFetch(domain:host)")
    pattern = spec[len("domain:") :]
    if pattern == "*":
        return Rule(entry, "WebFetch", None, "tool")
    from policies.urls import normalise_host_pattern  # late: urls imports nothing of ours

    host = normalise_host_pattern(pattern)
    if host is None:
        raise RuleSyntaxError(entry, "invalid domain pattern")
    return Rule(entry, "WebFetch", host, "domain")


def render_rule(tool: str, kind: str, specifier: str | None) -> str:
    """Canonical text of a rule, as reported in decisions (``Bash(git *)``)."""
    if not specifier:
        return tool
    if kind == "domain":
        return f"{tool}(domain:{specifier})"
    return f"{tool}({specifier})"


def rule_warnings(rule: Rule) -> list[str]:
    """Registry warnings: entries that parse but grant nothing or more than they seem."""
    warnings: list[str] = []
    spec = rule.specifier or ""
    if "*" in rule.tool and not _anchored_mcp_glob(rule.tool):
        warnings.append(f"{rule.raw}: unanchored tool-name glob never allows anything")
    if rule.kind == "literal":
        warnings.append(_literal_warning(rule))
    if rule.kind == "bash":
        lowered = spec.lower()
        for runner in _RUNNERS:
            if lowered == runner + " *" or lowered.startswith(runner + " *"):
                warnings.append(f"{rule.raw}: '{runner}' runs what follows: it allows any command")
                break
        head = spec.split(" ", 1)[0]
        if "*" in head:
            warnings.append(f"{rule.raw}: '*' in the command name matches other programs")
        elif " * " in spec or spec.startswith("* "):
            warnings.append(f"{rule.raw}: '*' before the subcommand also matches options like -c")
    for var in _VAR.findall(spec):
        if var not in _KNOWN_VARS:
            warnings.append(f"{rule.raw}: ${{{var}}} is not substituted and matches literally")
    return warnings


def _anchored_mcp_glob(tool: str) -> bool:
    match = _MCP.match(tool)
    return bool(match and match.group(2) and "*" not in match.group(1))


def _literal_warning(rule: Rule) -> str:
    param = _PARAM_VALUE.match(rule.specifier or "")
    if param and param.group(1) in _FIELDS.get(rule.tool, ()):
        return f"{rule.raw}: Tool(param:value) is a deny/ask form; as an allow it never matches"
    if rule.tool in _UNCONSULTED_PATH_TOOLS:
        return (
            f"{rule.raw}: Claude Code never consults path rules on {rule.tool}; it never matches "
            "here (use Read(...) or Edit(...))"
        )
    return f"{rule.raw}: {rule.tool} takes no specifier we can enforce; this rule never matches"


def policy_line(subject: str, rule: Rule) -> tuple[str, str, str, str]:
    """The Casbin policy line for a rule: (subject, tool, kind, specifier or "")."""
    return (subject, rule.tool, rule.kind, rule.specifier or "")
