"""policies.matchers: exact tool names, aliases, MCP boundaries, exec-option guard."""

from __future__ import annotations

import pytest

from policies.matchers import Arg, arg_matches, smuggles_exec, substitute_vars, tool_matches
from policies.paths import Anchors


@pytest.mark.parametrize(
    ("tool", "rule_tool", "kind", "expected"),
    [("Bash", "Bash", "tool", True), ("bash", "Bash", "tool", False),
     ("Grep", "Read", "tool", True), ("Write", "Edit", "tool", True),
     ("Task", "Agent", "tool", True), ("Bash", "*", "tool", False), ("*", "*", "tool", False),
     ("Glob", "Read", "read", True), ("NotebookEdit", "Edit", "edit", True),
     ("Monitor", "Monitor", "bash", True), ("Monitor", "Bash", "bash", False),
     ("mcp__s__t", "mcp__s", "mcp", True), ("mcp__s2__t", "mcp__s", "mcp", False),
     ("mcp__s", "mcp__s", "mcp", True), ("mcp__s__get_x", "mcp__s__get_*", "mcp", True),
     ("mcp__s__put", "mcp__s__get_*", "mcp", False), ("mcp__a__b", "mcp__*", "mcp", False),
     ("Write", "Write", "literal", False), (None, "Bash", "tool", False)],
)  # fmt: skip
def test_tool_matches(tool: object, rule_tool: str, kind: str, expected: bool) -> None:
    assert tool_matches(tool, rule_tool, kind) is expected


def test_arg_matches_rejects_foreign_args() -> None:
    assert not arg_matches("git status", "bash", "git *")
    assert arg_matches(Arg("git status", Anchors()), "bash", "git *")
    assert not arg_matches(Arg("x", Anchors()), "literal", "x")


def test_substitute_vars() -> None:
    anchors = Anchors(skill_dir="/s/d/", project_dir="/p")
    assert substitute_vars("${CLAUDE_SKILL_DIR}/a ${CLAUDE_PROJECT_DIR}", anchors) == "/s/d/a /p"
    assert substitute_vars("${CLAUDE_SKILL_DIR}/a", Anchors()) is None
    assert substitute_vars("${CLAUDE_SKILL_DIR}/a", Anchors(skill_dir="rel")) is None


@pytest.mark.parametrize(
    ("command", "pattern", "expected"),
    [("git -c a=b log", "git *", True), ("git '-c' a=b log", "git *", True),
     ("git -ca=b log", "git *", True), ("git -c a=b log", "git -c a=b log *", False),
     ("git --upload-pack=x fetch", "git *", True), ("git log -n1", "git *", False),
     ("find . -exec x", "find *", True), ("find . -name x", "find *", False),
     ("ls -c", "ls *", False)],
)  # fmt: skip
def test_smuggles_exec(command: str, pattern: str, expected: bool) -> None:
    assert smuggles_exec(command, pattern) is expected
