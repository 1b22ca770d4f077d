"""SkillVersion <-> a JSON-able dict (and orjson bytes), the one stored shape of both stores."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from skills_registry.manifest import Manifest, PolicyLine, SkillVersion

__all__ = ["FORMAT", "dumps", "loads", "version_from_dict", "version_to_dict"]

# Bumped when the stored shape changes, so a reader can tell old rows from new ones.
FORMAT = 1


def version_to_dict(version: SkillVersion) -> dict[str, Any]:
    """A plain dict of str/list/None values; the datetime becomes ISO 8601 with its offset."""
    if version.published_at.utcoffset() is None:
        # A naive time would be read back as some other instant on another machine.
        raise ValueError(f"{version.ref}: published_at must be timezone-aware")
    m = version.manifest
    return {
        "format": FORMAT,
        "name": version.name,
        "version": version.version,
        "digest": version.digest,
        "publisher": version.publisher,
        "published_at": version.published_at.isoformat(),
        "manifest": {
            "name": m.name,
            "description": m.description,
            "license": m.license,
            "compatibility": m.compatibility,
            "metadata": dict(m.metadata),
            "allowed_tools": None if m.allowed_tools is None else list(m.allowed_tools),
            "body": m.body,
        },
        "policy": [list(line) for line in version.policy],
        "warnings": list(version.warnings),
        "files": list(version.files),
    }


def version_from_dict(data: Mapping[str, Any]) -> SkillVersion:
    """The inverse of version_to_dict; lists come back as the tuples the value types use."""
    fmt = data.get("format")
    if fmt != FORMAT:
        raise ValueError(f"unsupported stored skill format: {fmt!r}")
    m = data["manifest"]
    allowed = m.get("allowed_tools")
    published_at = datetime.fromisoformat(data["published_at"])
    if published_at.utcoffset() is None:
        raise ValueError("stored published_at has no timezone")
    return SkillVersion(
        name=data["name"],
        version=data["version"],
        digest=data["digest"],
        publisher=data["publisher"],
        published_at=published_at,
        manifest=Manifest(
            name=m["name"],
            description=m["description"],
            license=m.get("license"),
            compatibility=m.get("compatibility"),
            metadata={str(k): str(v) for k, v in m.get("metadata", {}).items()},
            allowed_tools=None if allowed is None else tuple(allowed),
            body=m.get("body", ""),
        ),
        policy=tuple(_policy_line(line) for line in data.get("policy", ())),
        warnings=tuple(data.get("warnings", ())),
        files=tuple(data.get("files", ())),
    )


def _policy_line(line: Any) -> PolicyLine:
    # Fixed arity is the point of PolicyLine (no CSV joining), so a wrong length is corruption.
    if not isinstance(line, list | tuple) or len(line) != 4:
        raise ValueError(f"stored policy line must have 4 fields: {line!r}")
    subject, tool, kind, spec = (str(x) for x in line)
    return (subject, tool, kind, spec)


def dumps(version: SkillVersion) -> bytes:
    """UTF-8 JSON bytes of version_to_dict."""
    return orjson.dumps(version_to_dict(version))


def loads(raw: bytes | str) -> SkillVersion:
    """A SkillVersion from dumps' output (bytes or str, as the database hands it back)."""
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("stored skill version is not a JSON object")
    return version_from_dict(data)
