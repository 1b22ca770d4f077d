"""The adversarial tables under tests/cases/, one parametrised test per table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.enforcer import Decision, decide
from policies.rules import parse_rule, policy_line, rule_warnings, split_allowed_tools

CASES = Path(__file__).resolve().parent.parent / "cases"
CONTEXT = {"cwd": "/work/proj", "project_dir": "/work/proj", "home": "/home/user",
           "skill_dir": "/skills/demo"}  # fmt: skip


def _load(name: str) -> list[Any]:
    rows = yaml.safe_load((CASES / f"{name}.yaml").read_text(encoding="utf-8"))
    return [pytest.param(row, id=row["id"]) for row in rows]


def _run(row: dict[str, Any], tool: object, tool_input: object) -> Decision:
    rules = [parse_rule(entry) for entry in split_allowed_tools(row["rules"])]
    lines = [policy_line("skill@1", rule) for rule in rules]
    context = {**CONTEXT, **row.get("context", {})}
    decision = decide(lines, tool, tool_input, **context)
    expected = row["expect"] == "allow"
    assert decision.allow is expected, decision
    assert (decision.rule is not None) is expected
    assert decision.reason
    if "warn" in row:
        assert bool([w for r in rules for w in rule_warnings(r)]) is row["warn"]
    return decision


@pytest.mark.parametrize("row", _load("decisions"))
def test_spec_decision_table(row: dict[str, Any]) -> None:
    _run(row, row["tool"], row["input"])


@pytest.mark.parametrize("row", _load("bash"))
def test_bash_table(row: dict[str, Any]) -> None:
    command = row["input"]
    if isinstance(command, dict):
        command = command["repeat"] * command["times"]
    _run(row, "Bash", {"command": command})


@pytest.mark.parametrize("row", _load("paths"))
def test_paths_table(row: dict[str, Any]) -> None:
    _run(row, row["tool"], row["input"])


@pytest.mark.parametrize("row", _load("urls"))
def test_urls_table(row: dict[str, Any]) -> None:
    _run(row, "WebFetch", {"url": row["url"], "prompt": "summarise"})


@pytest.mark.parametrize("row", _load("tool_names"))
def test_tool_names_table(row: dict[str, Any]) -> None:
    _run(row, row["tool"], row["input"])
