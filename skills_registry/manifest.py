"""Registry value types: problems, a parsed manifest, a stored skill version, a publish result."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# One Casbin policy line, fixed arity: (subject "name@version", tool, kind, spec).
PolicyLine = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem: which field, which rule it breaks, and the offending value."""

    field: str
    rule: str
    value: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "value": self.value}


class SkillInvalid(Exception):
    """Raised with every problem found at once; nothing is stored when it is raised."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in skill")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Manifest:
    """SKILL.md frontmatter after validation. allowed_tools is None when the key is absent."""

    name: str
    description: str
    license: str | None = None
    compatibility: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] | None = None
    body: str = ""


@dataclass(frozen=True, slots=True)
class SkillVersion:
    """One published version of a skill, as the store keeps it."""

    name: str
    version: str
    digest: str  # "sha256:<hex>"
    publisher: str
    published_at: datetime  # timezone-aware UTC
    manifest: Manifest
    policy: tuple[PolicyLine, ...]
    warnings: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # relative paths in the folder, sorted

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class PublishResult:
    status: Literal["published", "unchanged"]
    version: SkillVersion
    added_tools: tuple[str, ...] = ()  # allowed-tools entries the previous version did not have
    warnings: tuple[str, ...] = ()
