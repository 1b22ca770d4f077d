"""Check a parsed frontmatter mapping: the JSON Schema first, then what a schema cannot say.

Every problem is collected; nothing stops at the first one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from policies.rules import RuleSyntaxError, split_allowed_tools
from skills_registry.compile import parse_rules
from skills_registry.manifest import Manifest, Problem
from skills_registry.parse import display

__all__ = [
    "ALLOWED_KEYS",
    "NAME_PATTERN",
    "VERSION_PATTERN",
    "check_name",
    "schema",
    "validate_frontmatter",
]

ALLOWED_KEYS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
NAME_PATTERN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# metadata.version becomes part of `name@version` (X-Skill header, Casbin subject), so it is
# held to a header- and CSV-safe shape; the spec itself allows any string in metadata.
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+-]{0,63}")

# Characters that NFKC does not fold but that readers take for ASCII (a small, common set).
_CONFUSABLES = {
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
    "ј": "j", "ѕ": "s", "ԁ": "d", "һ": "h", "ӏ": "l", "ԛ": "q", "ԝ": "w", "ѵ": "v",
    "ο": "o", "α": "a", "ν": "v", "ι": "i", "κ": "k", "ρ": "p", "τ": "t", "υ": "u",
    "ı": "i", "ℓ": "l", "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "−": "-",
}  # fmt: skip


@cache
def schema() -> dict[str, Any]:
    """The frontmatter JSON Schema (draft 2020-12) shipped in skills_registry/schema/."""
    text = resources.files("skills_registry").joinpath("schema/skill.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, date):
        return "a date"
    names = {str: "a string", list: "a list", dict: "a mapping", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _field(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "frontmatter"


def _schema_problems(error: ValidationError) -> list[Problem]:
    """Our wording for one jsonschema error (its own messages may embed megabytes)."""
    where, keyword = _field(error.absolute_path), error.validator
    value: Any = error.instance
    if keyword == "required":
        required: list[str] = list(error.validator_value or ())  # type: ignore[arg-type]
        missing = [k for k in required if k not in value]
        return [Problem(k, "is required") for k in missing]
    if keyword == "additionalProperties":
        extra = [k for k in value if k not in ALLOWED_KEYS]
        rule = f"unknown key (allowed: {', '.join(ALLOWED_KEYS)})"
        return [Problem(display(k), rule, display(value[k])) for k in extra]
    if "propertyNames" in error.schema_path:
        return [Problem(where, "keys must be strings", f"{display(value)} ({_kind(value)})")]
    if keyword == "type":
        wanted = {"string": "a string", "object": "a mapping", "array": "a list"}
        rule = f"must be {wanted.get(str(error.validator_value), error.validator_value)}"
        return [Problem(where, f"{rule}, not {_kind(value)}", display(value))]
    if keyword == "oneOf":  # only allowed-tools uses it
        return _allowed_tools_type(value)
    if keyword == "minLength":
        return [Problem(where, "must not be empty", display(value))]
    if keyword == "maxLength":
        rule = f"must be at most {error.validator_value} characters (got {len(value)})"
        return [Problem(where, rule, display(value))]
    if keyword == "pattern" and where == "name":
        return []  # check_name says precisely what is wrong
    return [Problem(where, display(error.message), display(value))]


def _allowed_tools_type(value: object) -> list[Problem]:
    rule = "must be a string or a list of strings"
    if isinstance(value, list):
        return [
            Problem(f"allowed-tools[{i}]", f"must be a string, not {_kind(item)}", display(item))
            for i, item in enumerate(value)
            if not isinstance(item, str)
        ]
    return [Problem("allowed-tools", f"{rule}, not {_kind(value)}", display(value))]


def _char_label(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'UNNAMED')}"


def check_name(name: str, folder_name: str | None = None) -> list[Problem]:
    """Spec rules for `name` beyond its length, one clear problem per kind of mistake."""
    problems: list[Problem] = []
    shown = display(name)
    if any("A" <= ch <= "Z" for ch in name):
        problems.append(Problem("name", "must be lowercase", shown))
    lookalikes, invalid = [], []
    for ch in dict.fromkeys(name):  # distinct, in order
        if ch.isascii():
            if not (ch.isalnum() or ch == "-"):
                invalid.append(_char_label(ch))
            continue
        folded = _CONFUSABLES.get(ch) or unicodedata.normalize("NFKC", ch)
        if folded.isascii() and (folded.isalnum() or folded == "-"):
            lookalikes.append(f"{_char_label(ch)} looks like {folded!r}")
        else:
            invalid.append(_char_label(ch))
    if lookalikes:
        rule = "must be ASCII: look-alike character " + "; ".join(lookalikes[:5])
        problems.append(Problem("name", rule, shown))
    if invalid:
        rule = "may only contain a-z, 0-9 and '-', found " + "; ".join(invalid[:5])
        problems.append(Problem("name", rule, shown))
    if name.startswith("-") or name.endswith("-"):
        problems.append(Problem("name", "must not start or end with a hyphen", shown))
    if "--" in name:
        problems.append(Problem("name", "must not contain consecutive hyphens (--)", shown))
    if not problems and 1 <= len(name) <= 64 and not NAME_PATTERN.fullmatch(name):
        problems.append(Problem("name", f"must match {NAME_PATTERN.pattern}", shown))
    if folder_name is not None and name != folder_name:
        rule = f"must equal the folder name {display(folder_name)!r}"
        problems.append(Problem("name", rule, shown))
    return problems


def _check_version(metadata: object) -> list[Problem]:
    if not isinstance(metadata, dict):
        return []
    version = metadata.get("version")
    if not isinstance(version, str) or VERSION_PATTERN.fullmatch(version):
        return []
    rule = "must be 1-64 of A-Z, a-z, 0-9, '.', '_', '+', '-' starting with a letter or digit"
    return [Problem("metadata.version", rule, display(version))]


def _split_tools(value: object) -> tuple[tuple[str, ...] | None, list[Problem]]:
    if not isinstance(value, str | list) or not all(isinstance(v, str) for v in value):
        return None, []  # the schema has reported the wrong type
    try:
        entries = tuple(split_allowed_tools(value))
    except RuleSyntaxError as exc:
        return None, [Problem("allowed-tools", exc.reason, display(exc.entry))]
    return entries, parse_rules(entries)[2]  # every entry must be a rule we can enforce


def _error_path(error: ValidationError) -> tuple[str, ...]:
    return tuple(str(part) for part in error.absolute_path)


def validate_frontmatter(
    frontmatter: Mapping[Any, Any], body: str = "", *, folder_name: str | None = None
) -> tuple[Manifest | None, list[Problem]]:
    """(Manifest, []) when valid, else (None, every problem); folder_name None skips that check."""
    problems: list[Problem] = []
    # jsonschema's error order follows set iteration (hash-seeded): sort by path so that
    # users and tests see the same list on every run.
    errors = sorted(_validator().iter_errors(frontmatter), key=_error_path)
    for error in errors:
        problems.extend(_schema_problems(error))
    name = frontmatter.get("name")
    if isinstance(name, str):
        problems.extend(check_name(name, folder_name))
    problems.extend(_check_version(frontmatter.get("metadata")))
    tools, tool_problems = _split_tools(frontmatter.get("allowed-tools", ""))
    problems.extend(tool_problems)
    problems = list(dict.fromkeys(problems))  # schema and semantic checks may overlap
    if problems:
        return None, problems
    manifest = Manifest(
        name=frontmatter["name"],
        description=frontmatter["description"],
        license=frontmatter.get("license"),
        compatibility=frontmatter.get("compatibility"),
        metadata=dict(frontmatter.get("metadata") or {}),
        allowed_tools=tools if "allowed-tools" in frontmatter else None,
        body=body,
    )
    return manifest, []
