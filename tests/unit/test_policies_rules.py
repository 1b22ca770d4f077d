"""policies.rules: entry splitting, rule grammar, warnings, policy lines."""

from __future__ import annotations

import pytest

from policies.rules import (
    Rule,
    RuleSyntaxError,
    parse_rule,
    policy_line,
    rule_warnings,
    split_allowed_tools,
)


def test_split_string_is_paren_aware() -> None:
    value = "Bash(git add *) Bash(git commit *),Read\n  Grep"
    assert split_allowed_tools(value) == ["Bash(git add *)", "Bash(git commit *)", "Read", "Grep"]


def test_split_list_strips_items() -> None:
    assert split_allowed_tools([" Bash(git add *) ", "Read", ""]) == ["Bash(git add *)", "Read"]


@pytest.mark.parametrize("value", ["Bash(git", "Bash)git(", "Read Bash(x))", ["Bash(x"]])
def test_split_unbalanced_raises(value: str | list[str]) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        split_allowed_tools(value)
    assert info.value.reason == "unbalanced parentheses"


@pytest.mark.parametrize(
    ("entry", "tool", "spec", "kind"),
    [
        ("Read", "Read", None, "tool"),
        ("Bash(git:*)", "Bash", "git *", "bash"),
        ("Bash(*)", "Bash", None, "tool"),
        ("Bash(git:* push)", "Bash", "git:* push", "bash"),
        ("Bash(git commit *)", "Bash", "git commit *", "bash"),
        ("Bash(npm run build)", "Bash", "npm run build", "bash"),
        ("Read(./src/**)", "Read", "./src/**", "read"),
        ("Read(~/x)", "Read", "~/x", "read"),
        ("Read(//abs/**)", "Read", "//abs/**", "read"),
        ("Edit(/docs/**)", "Edit", "/docs/**", "edit"),
        ("WebFetch(domain:*.Example.com.)", "WebFetch", "*.example.com", "domain"),
        ("WebFetch(domain:*)", "WebFetch", None, "tool"),
        ("mcp__server", "mcp__server", None, "mcp"),
        ("mcp__server__tool", "mcp__server__tool", None, "mcp"),
        ("mcp__server__get_*", "mcp__server__get_*", None, "mcp"),
        ("Agent(Explore)", "Agent", "Explore", "agent"),
        ("Task(Explore)", "Agent", "Explore", "agent"),
        ("Task", "Agent", None, "tool"),
        ("Skill(deploy)", "Skill", "deploy", "skill"),
        ("Skill(deploy *)", "Skill", "deploy *", "skill"),
        ("Bash(${CLAUDE_SKILL_DIR}/run.sh *)", "Bash", "${CLAUDE_SKILL_DIR}/run.sh *", "bash"),
        ("Write(docs/**)", "Write", "docs/**", "literal"),
        ("TodoWrite(x)", "TodoWrite", "x", "literal"),
        ("Bash(command:rm *)", "Bash", "command:rm *", "literal"),
        ("*", "*", None, "tool"),
    ],
)
def test_parse_rule_forms(entry: str, tool: str, spec: str | None, kind: str) -> None:
    assert parse_rule(entry) == Rule(entry, tool, spec, kind)


@pytest.mark.parametrize(
    "entry",
    ["", "Bash()", "Bash( )", "Bash((x))", "Bash(x", "Bash (x)", "B\u0430sh", "Bash\u200b",
     "\uff22ash", "Bash(\tgit)", "Bash(a\nb)", "1Bash", "mcp__s*__x", "mcp__a(x)",
     "WebFetch(https://example.com)", "WebFetch(domain:a/b)", "Bash(x)y", "Bash( git)"],
)  # fmt: skip
def test_parse_rule_rejects(entry: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_rule(entry)
    assert info.value.reason
    assert info.value.entry == entry or len(entry) > 80


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("mcp__*", "unanchored"),
        ("B*", "unanchored"),
        ("*", "unanchored"),
        ("Write(docs/**)", "never consults"),
        ("Glob(src/**)", "never consults"),
        ("Bash(devbox run *)", "any command"),
        ("Bash(npx *)", "any command"),
        ("Bash(command:rm *)", "deny/ask form"),
        ("Bash(git * main)", "before the subcommand"),
        ("Bash(${HOME}/x)", "not substituted"),
    ],
)
def test_rule_warnings(entry: str, fragment: str) -> None:
    assert any(fragment in w for w in rule_warnings(parse_rule(entry)))


_PLAIN = ["Read", "Bash(git status *)", "mcp__github__get_*", "Edit(/d/**)"]


@pytest.mark.parametrize("entry", _PLAIN)
def test_no_warnings_for_plain_rules(entry: str) -> None:
    assert rule_warnings(parse_rule(entry)) == []


def test_policy_line_has_fixed_arity() -> None:
    assert policy_line("s@1", parse_rule("Read")) == ("s@1", "Read", "tool", "")
    assert policy_line("s@1", parse_rule("Bash(a, b)")) == ("s@1", "Bash", "bash", "a, b")
