"""Per-skill-version enforcers: Casbin holds the rules, our matchers decide (pure, fail closed).

Each skill version gets one small ``casbin.Enforcer`` built from ``model.conf`` and its policy
lines (``add_policy`` with the fixed arity ``sub, tool, kind, spec``; never joined strings), with
``tool_matches``/``arg_matches`` registered through ``add_function`` (no ``eval``).

Why the hot path does not call ``Enforcer.enforce()``: measured at about 550 us per call for a
20-rule skill (casbin's generic expression evaluation), five times the 100 us budget for a whole
decision. So Casbin stays the rule store and the model stays the definition: the lines are read
back with ``get_policy()`` once per enforcer, and :meth:`SkillEnforcer.decide` runs the same
``r.sub == p.sub && tool_matches(...) && arg_matches(...)`` loop over that enforcer's lines only,
calling the same functions. :meth:`SkillEnforcer.casbin_allows` runs the real ``enforce()`` for
tests that check both agree.

A decision is ALLOW iff some rule serves the tool name (exactly as sent) and either has no
specifier or its specifier matches the call's primary input field (spec §8 B): Bash/Monitor
``command`` (every simple command must match a Bash rule, every write target an Edit rule),
Read/Edit/Write ``file_path``, NotebookEdit ``notebook_path``, Grep ``path`` (default cwd),
Glob ``path`` + ``pattern``, WebFetch ``url`` (host only), Agent/Task ``subagent_type``, Skill
``skill`` (+ `` args``). A missing or mistyped field, or any unexpected error, denies.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import casbin
from casbin import model as casbin_model

from policies import MODEL_PATH
from policies.bash import split_command
from policies.matchers import Arg, arg_matches, tool_matches
from policies.paths import Anchors, glob_root, normalise_path
from policies.rules import render_rule
from policies.urls import url_host

__all__ = ["Decision", "PolicyEngine", "SkillEnforcer", "decide", "filter_tools"]

Line = tuple[str, str, str, str]
_PATH_FIELD = {"Read": "file_path", "Edit": "file_path", "Write": "file_path",
               "NotebookEdit": "notebook_path"}  # fmt: skip


_NO_ANCHORS = Anchors()


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one tool call: the rule that allowed it (or None) and why."""

    allow: bool
    rule: str | None
    reason: str


def _deny(reason: str) -> Decision:
    return Decision(False, None, reason)


@functools.cache
def _model_text() -> str:
    with open(MODEL_PATH, encoding="utf-8") as handle:  # read once, from our own package
        return handle.read()


def _as_lines(policy_lines: Iterable[Sequence[str]]) -> tuple[Line, ...]:
    lines: list[Line] = []
    for line in policy_lines:
        if len(line) != 4 or not all(isinstance(field, str) for field in line):
            raise ValueError(f"policy line must be 4 strings: {line!r}")
        lines.append((line[0], line[1], line[2], line[3]))
    return tuple(lines)


class SkillEnforcer:
    """One skill version's rules with a bounded per-enforcer decision cache."""

    def __init__(self, subject: str, policy_lines: Iterable[Sequence[str]], cache_size: int = 1024):
        self.subject = subject
        model = casbin_model.Model()
        model.load_model_from_text(_model_text())
        self._casbin = casbin.Enforcer(model)
        self._casbin.add_function("tool_matches", tool_matches)
        self._casbin.add_function("arg_matches", arg_matches)
        for line in _as_lines(policy_lines):
            if line[0] == subject:
                self._casbin.add_policy(*line)
        stored = self._casbin.get_policy()
        self.lines: tuple[Line, ...] = tuple((s, t, k, p) for s, t, k, p in stored)
        self._cache: dict[tuple[Any, ...], Decision] = {}
        self._filters: dict[tuple[tuple[str, ...], frozenset[str]], tuple[list[str], list[str]]]
        self._filters = {}
        self._by_tool: dict[str, tuple[Line, ...]] = {}
        for name in ("Bash", "Edit", *(line[1] for line in self.lines)):
            self._serving(name)  # warm the index at build time, off the decision path
        self._cache_size = cache_size

    def casbin_allows(self, tool: str, arg: object) -> bool:
        """Casbin's own ``enforce()`` on one (tool, argument) request: slow, for tests."""
        return bool(self._casbin.enforce(self.subject, tool, arg))

    def _serving(self, tool: str) -> tuple[Line, ...]:
        """The lines whose tool part serves this tool name (memoised, bounded)."""
        found = self._by_tool.get(tool)
        if found is None:
            found = tuple(line for line in self.lines if tool_matches(tool, line[1], line[2]))
            if len(self._by_tool) >= 256:
                self._by_tool.clear()  # odd tool names must not grow memory
            self._by_tool[tool] = found
        return found

    def _first(self, tool: str, arg: Arg | None) -> str | None:
        for _, rule_tool, kind, spec in self._serving(tool):
            if not spec if arg is None else arg_matches(arg, kind, spec):
                return render_rule(rule_tool, kind, spec)
        return None

    def decide(self, tool: object, tool_input: object, anchors: Anchors = _NO_ANCHORS) -> Decision:
        """Decide one tool call; never raises (any internal error denies)."""
        try:
            key = _cache_key(tool, tool_input, anchors)
        except (TypeError, ValueError):
            return _deny("malformed tool input")
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            decision = self._decide(tool, tool_input, anchors)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - fail closed on anything unexpected
            decision = _deny(f"internal error while deciding: {type(exc).__name__}")
        if len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]  # FIFO eviction keeps the bound
        self._cache[key] = decision
        return decision

    def _decide(self, tool: str, tool_input: Mapping[str, Any], anchors: Anchors) -> Decision:
        if not self._serving(tool):
            return _deny(f"tool {tool!r} is not in the skill's allowed-tools")
        bare = self._first(tool, None)
        if bare is not None:
            return Decision(True, bare, f"{bare} allows every use of {tool}")
        if tool in ("Bash", "Monitor"):
            return self._decide_bash(tool, tool_input, anchors)
        arg = _argument(tool, tool_input, anchors)
        if isinstance(arg, str):
            return _deny(arg)
        rule = self._first(tool, arg)
        if rule is None:
            return _deny(f"no rule of the skill allows {tool} on {arg.value!r}")
        return Decision(True, rule, f"{rule} allows {tool} on {arg.value!r}")

    def _decide_bash(self, tool: str, tool_input: Mapping[str, Any], anchors: Anchors) -> Decision:
        split = split_command(tool_input.get("command"))
        if split.error is not None:
            return _deny(f"{tool} command denied: {split.error}")
        used: list[str] = []
        for command in split.commands:
            rule = self._first(tool, Arg(command, anchors))
            if rule is None:
                return _deny(f"no Bash rule allows {command!r}")
            used.append(rule)
        for target in split.writes:
            path = normalise_path(target, anchors)
            rule = self._first("Edit", Arg(path, anchors)) if path else None
            if rule is None:
                return _deny(f"no Edit rule allows writing to {target!r}")
            used.append(rule)
        rules = ", ".join(dict.fromkeys(used))
        return Decision(True, rules, f"every command is allowed ({rules})")

    def filter_tools(
        self, offered: Sequence[str], always_allowed: Iterable[str] = ()
    ) -> tuple[list[str], list[str]]:
        """Split offered tool names into (kept, removed): kept if some rule could allow it."""
        key = (tuple(offered), frozenset(always_allowed))
        cached = self._filters.get(key)
        if cached is not None:
            return list(cached[0]), list(cached[1])
        kept: list[str] = []
        removed: list[str] = []
        for name in key[0]:
            usable = name in key[1] or any(
                kind != "literal" and tool_matches(name, rule_tool, kind)
                for _, rule_tool, kind, _ in self.lines
            )
            (kept if usable else removed).append(name)
        if len(self._filters) >= 64:
            self._filters.clear()
        self._filters[key] = (kept, removed)
        return list(kept), list(removed)


def _cache_key(tool: object, tool_input: object, anchors: Anchors) -> tuple[Any, ...]:
    if not isinstance(tool, str) or not isinstance(tool_input, Mapping):
        raise TypeError("tool must be a string and input an object")
    fields = ("command", "file_path", "notebook_path", "path", "pattern", "url",
              "subagent_type", "skill", "args")  # fmt: skip
    values = tuple(tool_input.get(field) for field in fields)
    hash(values)  # unhashable (list/dict) values raise TypeError: malformed input
    return (tool, values, anchors)


def _argument(tool: str, tool_input: Mapping[str, Any], anchors: Anchors) -> Arg | str:
    """The normalised primary argument of a call, or the reason to deny."""
    if tool in _PATH_FIELD or tool == "Grep":
        field = _PATH_FIELD.get(tool, "path")
        raw = tool_input.get(field, "." if tool == "Grep" else None)
        path = normalise_path(raw, anchors)
        if path is None:
            return f"{tool} {field} is missing, invalid or cannot be anchored"
        return Arg(path, anchors, subtree=tool == "Grep")
    if tool == "Glob":
        root = glob_root(tool_input.get("pattern"), tool_input.get("path"), anchors)
        if root is None:
            return "Glob pattern/path is missing, invalid or cannot be bounded"
        return Arg(root, anchors, subtree=True)
    if tool == "WebFetch":
        host = url_host(tool_input.get("url"))
        return Arg(host, anchors) if host else "WebFetch url is missing or not allowed"
    if tool in ("Agent", "Task"):
        name = tool_input.get("subagent_type")
        return Arg(name, anchors) if isinstance(name, str) else "subagent_type is missing"
    if tool == "Skill":
        return _skill_argument(tool_input, anchors)
    return f"{tool} takes no argument a rule could match"


def _skill_argument(tool_input: Mapping[str, Any], anchors: Anchors) -> Arg | str:
    name, args = tool_input.get("skill"), tool_input.get("args")
    if not isinstance(name, str) or not name or (args is not None and not isinstance(args, str)):
        return "Skill input needs a 'skill' name (and string 'args')"
    return Arg(f"{name} {args}" if args else name, anchors)


class PolicyEngine:
    """LRU of per-skill-version enforcers (bounded), the object the gateway keeps."""

    def __init__(self, max_skills: int = 16_384, decisions_per_skill: int = 1024) -> None:
        self._enforcers: OrderedDict[str, SkillEnforcer] = OrderedDict()
        self._max = max_skills
        self._decisions = decisions_per_skill

    def enforcer(self, subject: str, policy_lines: Iterable[Sequence[str]]) -> SkillEnforcer:
        """The cached enforcer of a skill version (``subject``; versions are immutable)."""
        found = self._enforcers.get(subject)
        if found is not None:
            self._enforcers.move_to_end(subject)
            return found
        created = SkillEnforcer(subject, policy_lines, self._decisions)
        self._enforcers[subject] = created
        if len(self._enforcers) > self._max:
            self._enforcers.popitem(last=False)
        return created

    def forget(self, subject: str) -> None:
        """Drop a cached enforcer (e.g. a skill version was withdrawn)."""
        self._enforcers.pop(subject, None)

    def __len__(self) -> int:
        return len(self._enforcers)


def decide(
    policy_lines: Iterable[Sequence[str]],
    tool: object,
    tool_input: object,
    *,
    cwd: str | None = None,
    project_dir: str | None = None,
    skill_dir: str | None = None,
    home: str | None = None,
) -> Decision:
    """One-off decision over a skill's policy lines (no caching; the gateway uses PolicyEngine)."""
    try:
        lines = _as_lines(policy_lines)
    except (TypeError, ValueError):
        return _deny("malformed policy lines")
    subject = lines[0][0] if lines else ""
    anchors = Anchors(cwd=cwd, project_dir=project_dir, home=home, skill_dir=skill_dir)
    return SkillEnforcer(subject, lines).decide(tool, tool_input, anchors)


def filter_tools(
    policy_lines: Iterable[Sequence[str]], offered: Sequence[str], always_allowed: Iterable[str]
) -> tuple[list[str], list[str]]:
    """One-off request-side tool filter: (kept, removed) offered names."""
    lines = _as_lines(policy_lines)
    subject = lines[0][0] if lines else ""
    return SkillEnforcer(subject, lines).filter_tools(offered, always_allowed)
