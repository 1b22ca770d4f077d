"""JSON views of registry objects, shared by the admin API and the CLI's --json output."""

from __future__ import annotations

from typing import Any

from skills_registry.manifest import PublishResult, SkillVersion
from skills_registry.serialize import version_to_dict

__all__ = ["publish_result_view", "skill_detail_view", "skill_summary_view"]


def skill_summary_view(version: SkillVersion) -> dict[str, Any]:
    """One line of a skill listing: the latest version, without the body."""
    m = version.manifest
    return {
        "name": version.name,
        "version": version.version,
        "digest": version.digest,
        "description": m.description,
        "publisher": version.publisher,
        "published_at": version.published_at.isoformat(),
        "allowed_tools": None if m.allowed_tools is None else list(m.allowed_tools),
        "warnings": list(version.warnings),
    }


def skill_detail_view(selected: SkillVersion, versions: list[SkillVersion]) -> dict[str, Any]:
    """The selected version in full (compiled rules included) plus the version history."""
    detail = version_to_dict(selected)
    detail.pop("format", None)
    detail["ref"] = selected.ref
    detail["versions"] = [
        {
            "version": v.version,
            "digest": v.digest,
            "publisher": v.publisher,
            "published_at": v.published_at.isoformat(),
        }
        for v in versions
    ]
    return detail


def publish_result_view(result: PublishResult) -> dict[str, Any]:
    v = result.version
    return {
        "status": result.status,
        "name": v.name,
        "version": v.version,
        "ref": v.ref,
        "digest": v.digest,
        "publisher": v.publisher,
        "added_tools": list(result.added_tools),
        "warnings": list(result.warnings),
        "policy": [list(line) for line in v.policy],
    }
