"""policies.enforcer: Casbin agreement, caches and their bounds, tool filter, fail-closed API."""

from __future__ import annotations

import pytest

from policies.enforcer import Decision, PolicyEngine, SkillEnforcer, decide, filter_tools
from policies.matchers import Arg
from policies.paths import Anchors
from policies.rules import parse_rule, policy_line, split_allowed_tools

ANCHORS = Anchors(cwd="/w/p", project_dir="/w/p", home="/home/u", skill_dir="/s/d")
RULES = ("Bash(git:*) Read(./src/**) Edit(/docs/**) WebFetch(domain:*.example.com) "
         "mcp__github Agent(Explore) Skill(deploy *) Write(x/**) TodoWrite")  # fmt: skip


def _lines(subject: str = "s@1", rules: str = RULES) -> list[tuple[str, str, str, str]]:
    return [policy_line(subject, parse_rule(e)) for e in split_allowed_tools(rules)]


@pytest.mark.parametrize(
    ("tool", "value", "expected"),
    [
        ("Bash", "git status", True),
        ("Bash", "rm -rf /", False),
        ("Read", "/w/p/src/a.py", True),
        ("Read", "/w/p/secrets", False),
        ("Grep", "/w/p/src/a.py", True),
        ("Write", "/w/p/docs/a.md", True),
        ("Write", "/w/p/x/a", False),
        ("WebFetch", "a.example.com", True),
        ("WebFetch", "example.com", False),
        ("mcp__github__x", "", True),
        ("mcp__github2__x", "", False),
        ("Task", "Explore", True),
        ("Skill", "deploy prod", True),
        ("TodoWrite", "", True),
        ("bash", "git status", False),
    ],
)
def test_own_loop_agrees_with_casbin_enforce(tool: str, value: str, expected: bool) -> None:
    enforcer = SkillEnforcer("s@1", _lines())
    arg = Arg(value, ANCHORS)
    assert enforcer.casbin_allows(tool, arg) is expected
    own = enforcer._first(tool, None) or enforcer._first(tool, arg)
    assert (own is not None) is expected


def test_policy_lines_are_stored_through_casbin() -> None:
    enforcer = SkillEnforcer("s@1", _lines() + [("other@1", "Bash", "tool", "")])
    assert ("s@1", "Bash", "bash", "git *") in enforcer.lines
    assert all(line[0] == "s@1" for line in enforcer.lines)


def test_csv_like_specifiers_stay_one_field() -> None:
    lines = _lines(rules='Bash(echo "a, b", c)')
    assert SkillEnforcer("s@1", lines).lines == (("s@1", "Bash", "bash", 'echo "a, b", c'),)


def test_decision_cache_is_bounded_and_hit() -> None:
    enforcer = SkillEnforcer("s@1", _lines(), cache_size=8)
    first = enforcer.decide("Bash", {"command": "git status"}, ANCHORS)
    assert enforcer.decide("Bash", {"command": "git status"}, ANCHORS) is first
    for n in range(50):
        enforcer.decide("Bash", {"command": f"git log -{n}"}, ANCHORS)
    assert len(enforcer._cache) <= 8


def test_cache_key_includes_anchors() -> None:
    enforcer = SkillEnforcer("s@1", _lines())
    call = {"file_path": "src/a.py"}
    assert enforcer.decide("Read", call, ANCHORS).allow
    assert not enforcer.decide("Read", call, Anchors()).allow


def test_engine_lru_keeps_a_bound() -> None:
    engine = PolicyEngine(max_skills=3)
    for n in range(10):
        engine.enforcer(f"s{n}@1", _lines(f"s{n}@1"))
    assert len(engine) == 3
    kept = engine.enforcer("s9@1", ())
    assert kept.lines  # still the cached one, not rebuilt from the empty lines
    engine.forget("s9@1")
    assert len(engine) == 2


@pytest.mark.parametrize(
    "tool_input", [None, [], "git status", {"command": ["git"]}, {"command": {"a": 1}}]
)
def test_malformed_input_denies(tool_input: object) -> None:
    decision = decide(_lines(), "Bash", tool_input, cwd="/w/p")
    assert decision == Decision(False, None, decision.reason)
    assert decision.reason


def test_malformed_policy_lines_deny() -> None:
    assert not decide([("s", "Bash")], "Bash", {"command": "ls"}).allow  # type: ignore[list-item]


def test_filter_tools() -> None:
    offered = ["Bash", "Read", "Grep", "Glob", "Edit", "Write", "NotebookEdit", "WebFetch",
               "WebSearch", "mcp__github__x", "mcp__github2__x", "Agent", "Task", "Skill",
               "TodoWrite", "bash", "AskUserQuestion"]  # fmt: skip
    kept, removed = filter_tools(_lines(), offered, always_allowed=["AskUserQuestion"])
    assert kept == ["Bash", "Read", "Grep", "Glob", "Edit", "Write", "NotebookEdit", "WebFetch",
                    "mcp__github__x", "Agent", "Task", "Skill", "TodoWrite",
                    "AskUserQuestion"]  # fmt: skip
    assert removed == ["WebSearch", "mcp__github2__x", "bash"]


def test_filter_tools_literal_rules_keep_nothing() -> None:
    kept, removed = filter_tools(_lines(rules="Write(x/**) Glob(src/**)"), ["Write", "Glob"], [])
    assert (kept, removed) == ([], ["Write", "Glob"])


def test_filter_tools_is_cached_per_tuple() -> None:
    enforcer = SkillEnforcer("s@1", _lines())
    first = enforcer.filter_tools(["Bash", "WebSearch"], ["Skill"])
    assert enforcer.filter_tools(["Bash", "WebSearch"], ["Skill"]) == first
    assert len(enforcer._filters) == 1


def test_allow_names_every_rule_used() -> None:
    lines = _lines(rules="Bash(git:*) Bash(grep:*) Edit(./out/**)")
    decision = decide(lines, "Bash", {"command": "git log | grep x > out/a"}, cwd="/w/p")
    assert decision.allow
    assert decision.rule == "Bash(git *), Bash(grep *), Edit(./out/**)"
