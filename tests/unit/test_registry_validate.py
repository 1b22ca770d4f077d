"""Frontmatter validation: the JSON Schema plus semantic checks, every problem at once."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from skills_registry.manifest import Manifest
from skills_registry.validate import ALLOWED_KEYS, check_name, schema, validate_frontmatter

BASE: dict[str, Any] = {"name": "code-review", "description": "Reviews code."}


def _rules(frontmatter: dict[Any, Any], folder: str | None = None) -> list[tuple[str, str]]:
    manifest, problems = validate_frontmatter(frontmatter, folder_name=folder)
    assert manifest is None
    return [(p.field, p.rule) for p in problems]


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema()["properties"]) == set(ALLOWED_KEYS)


def test_full_valid_manifest() -> None:
    fm = {
        **BASE,
        "license": "Apache-2.0",
        "compatibility": "Needs git",
        "metadata": {"version": "1.2.0", "author": "me"},
        "allowed-tools": "Bash(git add *) Bash(git commit *), Read",
    }
    manifest, problems = validate_frontmatter(fm, "body", folder_name="code-review")
    assert problems == []
    assert manifest == Manifest(
        name="code-review",
        description="Reviews code.",
        license="Apache-2.0",
        compatibility="Needs git",
        metadata={"version": "1.2.0", "author": "me"},
        allowed_tools=("Bash(git add *)", "Bash(git commit *)", "Read"),
        body="body",
    )


def test_absent_allowed_tools_is_none_and_empty_is_empty() -> None:
    absent, _ = validate_frontmatter(BASE)
    empty, _ = validate_frontmatter({**BASE, "allowed-tools": ""})
    assert absent is not None and absent.allowed_tools is None
    assert empty is not None and empty.allowed_tools == ()


def test_allowed_tools_as_list() -> None:
    manifest, _ = validate_frontmatter({**BASE, "allowed-tools": ["Bash(git add *)", " Read "]})
    assert manifest is not None
    assert manifest.allowed_tools == ("Bash(git add *)", "Read")


def test_no_folder_skips_the_folder_check() -> None:
    assert validate_frontmatter(BASE, folder_name=None)[1] == []
    assert _rules(BASE, folder="other") == [("name", "must equal the folder name 'other'")]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("Code-Review", "must be lowercase"),
        ("code--review", "consecutive hyphens"),
        ("-code", "start or end with a hyphen"),
        ("code-", "start or end with a hyphen"),
        ("cоde", "look-alike character U+043E CYRILLIC SMALL LETTER O looks like 'o'"),
        ("ｃode", "look-alike character U+FF43 FULLWIDTH LATIN SMALL LETTER C"),
        ("code‐review", "U+2010 HYPHEN looks like '-'"),
        ("code_review", "found U+005F LOW LINE"),
        ("code review", "found U+0020 SPACE"),
        ("技能", "found U+6280"),
        ("code\n", "found U+000A"),
    ],
)
def test_name_rules(name: str, fragment: str) -> None:
    rules = [p.rule for p in check_name(name)]
    assert any(fragment in r for r in rules), rules


def test_one_problem_per_kind_of_name_mistake() -> None:
    rules = [p.rule for p in check_name("-A--b_c_-")]
    assert len(rules) == 4  # lowercase, invalid characters, hyphen ends, consecutive hyphens


def test_name_length() -> None:
    assert validate_frontmatter({**BASE, "name": "a" * 64})[1] == []
    assert _rules({**BASE, "name": "a" * 65}) == [
        ("name", "must be at most 64 characters (got 65)")
    ]


def test_description_bounds() -> None:
    assert validate_frontmatter({**BASE, "description": "d" * 1024})[1] == []
    assert _rules({**BASE, "description": "d" * 1025}) == [
        ("description", "must be at most 1024 characters (got 1025)")
    ]


def test_huge_description_is_one_short_problem() -> None:
    _, problems = validate_frontmatter({**BASE, "description": "x" * 1_000_000})
    assert len(problems) == 1
    assert len(problems[0].value) == 80
    assert "1000000" in problems[0].rule


def test_metadata_values_are_reported_not_coerced() -> None:
    rules = _rules({**BASE, "metadata": {"a": 1, "b": None, "c": "ok", 7: "x"}})
    assert rules == [
        ("metadata", "keys must be strings"),
        ("metadata.a", "must be a string, not a number"),
        ("metadata.b", "must be a string, not null"),
    ]


def test_unknown_keys_each_reported_with_the_allowed_list() -> None:
    rules = _rules({**BASE, "argument-hint": "x", "model": "y", 3: "z"})
    assert [field for field, _ in rules] == ["argument-hint", "model", "3"]
    assert all("allowed: name, description" in rule for _, rule in rules)


def test_allowed_tools_problems() -> None:
    assert _rules({**BASE, "allowed-tools": 5}) == [
        ("allowed-tools", "must be a string or a list of strings, not a number")
    ]
    assert _rules({**BASE, "allowed-tools": "Bash(git"}) == [
        ("allowed-tools", "unbalanced parentheses")
    ]
    assert _rules({**BASE, "allowed-tools": ["Read", "Bash(x"]}) == [
        ("allowed-tools", "unbalanced parentheses")
    ]
    assert _rules({**BASE, "allowed-tools": "Read Bash() Edit(a(b))"}) == [
        ("allowed-tools", "empty parentheses"),
        ("allowed-tools", "nested parentheses"),
    ]


@pytest.mark.parametrize("version", ["1.0.0", "2024.06.01", "1.0.0-rc.1+build", "v2"])
def test_valid_metadata_versions(version: str) -> None:
    assert validate_frontmatter({**BASE, "metadata": {"version": version}})[1] == []


@pytest.mark.parametrize("version", ["", "1 0", "a@b", ".1", "x" * 65, "1,0"])
def test_unsafe_metadata_versions(version: str) -> None:
    assert _rules({**BASE, "metadata": {"version": version}}) == [
        (
            "metadata.version",
            "must be 1-64 of A-Z, a-z, 0-9, '.', '_', '+', '-' starting with a letter or digit",
        )
    ]


def test_every_problem_at_once() -> None:
    fm = {
        "name": "Bad--Name",
        "description": "",
        "license": ["MIT"],
        "compatibility": "c" * 501,
        "metadata": {"version": 3},
        "allowed-tools": "Bash(",
        "extra": 1,
    }
    fields = [field for field, _ in _rules(fm, folder="bad-name")]
    assert sorted(fields) == sorted(
        ["extra", "description", "license", "compatibility", "metadata.version",
         "name", "name", "name", "allowed-tools"]
    )  # fmt: skip
