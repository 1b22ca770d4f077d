"""Read SKILL.md safely: UTF-8, no BOM, line-anchored `---` frontmatter, a hardened YAML loader.

Nothing here raises for bad input: every defect becomes a Problem in ParsedSkillMd.problems.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass, field
from typing import Any

import frontmatter
import yaml
from frontmatter.default_handlers import BaseHandler

from skills_registry.manifest import Problem

__all__ = ["MAX_FRONTMATTER_BYTES", "ParsedSkillMd", "display", "parse_skill_md"]

# The spec's fields add up to a few KiB; anything this big is a mistake or an attack, and the
# pure-Python YAML parser should never see it.
MAX_FRONTMATTER_BYTES = 64 * 1024
# YAML nests by recursion; deep nesting is never legitimate here and could exhaust the stack.
MAX_YAML_DEPTH = 20
DISPLAY_CHARS = 80

_FIELD = "SKILL.md"
# Line-anchored: a `---` inside a value (`description: a---b`) is not a delimiter.
_BOUNDARY = re.compile(r"^---[ \t]*\r?$", re.MULTILINE)
_BOM = "\ufeff"

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = DISPLAY_CHARS
_repr.maxother = DISPLAY_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 6


def display(value: object) -> str:
    """A short, bounded text for a Problem's value (never recursion, never megabytes)."""
    text = value if isinstance(value, str) else _repr.repr(value)
    if len(text) > DISPLAY_CHARS:
        return text[: DISPLAY_CHARS - 3] + "..."
    return text


@dataclass(frozen=True, slots=True)
class ParsedSkillMd:
    """frontmatter is None when it could not be read as a YAML mapping."""

    frontmatter: dict[Any, Any] | None
    body: str
    problems: tuple[Problem, ...] = field(default=())


class _YamlRejected(Exception):
    """A YAML construct we refuse, with the rule to report."""

    def __init__(self, rule: str, value: str = "") -> None:
        super().__init__(rule)
        self.rule = rule
        self.value = value


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader minus aliases/anchors (alias bombs), merge keys, duplicate keys, deep nesting."""

    _sw_depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _YamlRejected("YAML aliases are not allowed", f"*{event.anchor}")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _YamlRejected("YAML anchors are not allowed", f"&{anchor}")
        depth = self._sw_depth
        if depth >= MAX_YAML_DEPTH:
            raise _YamlRejected(f"YAML nesting deeper than {MAX_YAML_DEPTH} levels")
        self._sw_depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._sw_depth = depth

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _YamlRejected("YAML merge keys (<<) are not allowed")
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in result
            except TypeError:
                raise _YamlRejected("mapping keys must be scalars", display(key)) from None
            if duplicate:
                raise _YamlRejected("duplicate key", display(key))
            result[key] = self.construct_object(value_node, deep=deep)
        return result


# Every mapping, including nested ones, goes through our construct_mapping.
def _construct_map(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


class _NotAMapping(Exception):
    def __init__(self, data: object) -> None:
        super().__init__("frontmatter is not a mapping")
        self.data = data


class _SafeYamlHandler(BaseHandler):
    """python-frontmatter handler: line-anchored boundary and the strict loader."""

    FM_BOUNDARY = _BOUNDARY
    START_DELIMITER = END_DELIMITER = "---"

    def load(self, fm: str, **kwargs: object) -> Any:
        data = yaml.load(fm, Loader=_StrictLoader)
        if not isinstance(data, dict):
            raise _NotAMapping(data)
        return data


def _decode(raw: bytes | str) -> tuple[str, list[Problem]]:
    """Text plus problems; bad bytes are replaced so the rest of the file can still be checked."""
    problems: list[Problem] = []
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1].hex()
            problems.append(
                Problem(_FIELD, "must be valid UTF-8", f"byte 0x{bad} at offset {exc.start}")
            )
            text = raw.decode("utf-8", errors="replace")
    else:
        text = raw
    if text.startswith(_BOM):
        problems.append(Problem(_FIELD, "must not start with a byte order mark (BOM)", "U+FEFF"))
        text = text[1:]
    return text, problems


def _split_check(text: str) -> Problem | None:
    """The frontmatter must open on line 1 and close on a later `---` line."""
    first_line = text.split("\n", 1)[0]
    if not _BOUNDARY.fullmatch(first_line):
        return Problem(
            _FIELD, "must start with YAML frontmatter (a first line of ---)", display(first_line)
        )
    rest = text[len(first_line) + 1 :] if "\n" in text else ""
    closing = _BOUNDARY.search(rest)
    if closing is None:
        return Problem(_FIELD, "frontmatter is not closed with a --- line")
    size = len(rest[: closing.start()].encode("utf-8", errors="replace"))
    if size > MAX_FRONTMATTER_BYTES:
        return Problem(
            "frontmatter", f"must be at most {MAX_FRONTMATTER_BYTES} bytes", f"{size} bytes"
        )
    return None


def _yaml_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    reason = getattr(exc, "problem", None) or str(exc)
    return Problem("frontmatter", f"is not valid YAML: {reason}{where}")


def parse_skill_md(raw: bytes | str) -> ParsedSkillMd:
    """Split SKILL.md into its frontmatter mapping and Markdown body; never raises for bad input."""
    text, problems = _decode(raw)
    split_problem = _split_check(text)
    if split_problem is not None:
        return ParsedSkillMd(None, text, tuple([*problems, split_problem]))
    try:
        data, body = frontmatter.parse(text, handler=_SafeYamlHandler())
    except _YamlRejected as exc:
        problems.append(Problem("frontmatter", exc.rule, exc.value))
    except _NotAMapping as exc:
        problems.append(Problem("frontmatter", "must be a YAML mapping", display(exc.data)))
    except yaml.YAMLError as exc:
        problems.append(_yaml_problem(exc))
    except (RecursionError, MemoryError, ValueError):
        problems.append(Problem("frontmatter", "could not be parsed"))
    else:
        return ParsedSkillMd(dict(data), body, tuple(problems))
    return ParsedSkillMd(None, "", tuple(problems))
