"""allowed-tools -> Casbin policy lines: fixed arity, warnings, every bad entry reported."""

from __future__ import annotations

import casbin
import pytest

from policies import MODEL_PATH
from skills_registry.compile import compile_policy, parse_rules
from skills_registry.manifest import SkillInvalid


def test_lines_in_order_with_normalised_rules() -> None:
    compiled = compile_policy("demo@1", ["Read", "Bash(git:*)", "Task(Explore)", "Bash(*)"])
    assert compiled.lines == (
        ("demo@1", "Read", "tool", ""),
        ("demo@1", "Bash", "bash", "git *"),
        ("demo@1", "Agent", "agent", "Explore"),
        ("demo@1", "Bash", "tool", ""),
    )
    assert compiled.warnings == ()


def test_duplicates_collapse() -> None:
    compiled = compile_policy("demo@1", ["Bash(git:*)", "Bash(git *)", "Read", "Read"])
    assert compiled.lines == (("demo@1", "Bash", "bash", "git *"), ("demo@1", "Read", "tool", ""))


def test_no_entries_no_lines() -> None:
    assert compile_policy("demo@1", []).lines == ()


def test_commas_and_newlines_stay_inside_their_field() -> None:
    # A CSV-joined policy would split this into extra columns or lines; add_policy cannot.
    compiled = compile_policy("demo@1", ['Bash(echo "a, b"\nx)'.replace("\n", " ")])
    assert compiled.lines == (("demo@1", "Bash", "bash", 'echo "a, b" x'),)
    enforcer = casbin.Enforcer(MODEL_PATH)
    enforcer.add_policy(*compiled.lines[0])
    assert enforcer.get_policy() == [list(compiled.lines[0])]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("Write(docs/**)", "never consults path rules on Write"),
        ("Glob(src/**)", "never consults path rules on Glob"),
        ("mcp__*", "unanchored tool-name glob"),
        ("*", "unanchored tool-name glob"),
        ("Bash(devbox run *)", "allows any command"),
    ],
)
def test_warnings(entry: str, fragment: str) -> None:
    compiled = compile_policy("demo@1", [entry])
    assert any(fragment in w for w in compiled.warnings), compiled.warnings


def test_every_bad_entry_is_a_problem() -> None:
    with pytest.raises(SkillInvalid) as caught:
        compile_policy("demo@1", ["Read", "Bash()", "WebFetch(example.com)", "Rеad"])
    problems = caught.value.problems
    assert [p.value for p in problems] == ["Bash()", "WebFetch(example.com)", "Rеad"]
    assert all(p.field == "allowed-tools" for p in problems)
    assert problems[0].rule == "empty parentheses"


def test_parse_rules_returns_rules_warnings_and_problems() -> None:
    rules, warnings, problems = parse_rules(["Read", "Write(x)", "Bash()"])
    assert [r.tool for r in rules] == ["Read", "Write"]
    assert len(warnings) == 1
    assert len(problems) == 1
