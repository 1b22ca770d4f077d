"""allowed-tools entries -> Casbin policy lines for one skill version, plus registry warnings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import casbin

from policies import MODEL_PATH
from policies.rules import Rule, RuleSyntaxError, parse_rule, policy_line, rule_warnings
from skills_registry.manifest import PolicyLine, Problem, SkillInvalid
from skills_registry.parse import display

__all__ = ["CompiledPolicy", "compile_policy", "parse_rules"]


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    lines: tuple[PolicyLine, ...]
    warnings: tuple[str, ...] = ()


def parse_rules(entries: Sequence[str]) -> tuple[list[Rule], list[str], list[Problem]]:
    """(rules, warnings, problems): every entry is tried, so every bad one is reported."""
    rules: list[Rule] = []
    warnings: list[str] = []
    problems: list[Problem] = []
    for entry in entries:
        try:
            rule = parse_rule(entry)
        except RuleSyntaxError as exc:
            problems.append(Problem("allowed-tools", exc.reason, display(entry)))
            continue
        rules.append(rule)
        warnings.extend(rule_warnings(rule))
    return rules, list(dict.fromkeys(warnings)), problems


def compile_policy(subject: str, entries: Sequence[str]) -> CompiledPolicy:
    """Policy lines for `subject` ("name@version"); SkillInvalid lists every bad entry."""
    rules, warnings, problems = parse_rules(entries)
    if problems:
        raise SkillInvalid(problems)
    # Casbin itself holds the lines: add_policy takes the fields separately (fixed arity), so
    # no entry can smuggle a comma or newline into another column, and duplicates collapse.
    enforcer = casbin.Enforcer(MODEL_PATH)
    for rule in rules:
        enforcer.add_policy(*policy_line(subject, rule))
    lines = tuple(_as_line(fields) for fields in enforcer.get_policy())
    return CompiledPolicy(lines, tuple(warnings))


def _as_line(fields: Sequence[str]) -> PolicyLine:
    subject, tool, kind, spec = fields
    return (str(subject), str(tool), str(kind), str(spec))
