"""SkillVersion <-> dict/JSON: the stored shape both skill stores share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from skills_registry import serialize
from skills_registry.manifest import Manifest, SkillVersion


def version(**changes: Any) -> SkillVersion:
    fields: dict[str, Any] = {
        "name": "pdf-processing",
        "version": "2.1.0",
        "digest": "sha256:" + "ab" * 32,
        "publisher": "ci-bot",
        "published_at": datetime(2025, 6, 1, 8, 30, tzinfo=UTC),
        "manifest": Manifest(
            name="pdf-processing",
            description="Extract text from PDFs",
            license="MIT",
            compatibility="python>=3.11",
            metadata={"owner": "docs-team"},
            allowed_tools=("Read", "Bash(pdftotext:*)"),
            body="Use pdftotext.\n",
        ),
        "policy": (("pdf-processing@2.1.0", "Bash", "prefix", "pdftotext"),),
        "warnings": ("w1",),
        "files": ("SKILL.md", "reference.md"),
    }
    fields.update(changes)
    return SkillVersion(**fields)


def test_round_trip_through_bytes() -> None:
    v = version()
    assert serialize.loads(serialize.dumps(v)) == v
    assert serialize.loads(serialize.dumps(v).decode()) == v


def test_dict_is_plain_json() -> None:
    d = serialize.version_to_dict(version())
    assert d["format"] == serialize.FORMAT
    assert d["published_at"] == "2025-06-01T08:30:00+00:00"
    assert d["policy"] == [["pdf-processing@2.1.0", "Bash", "prefix", "pdftotext"]]
    assert d["manifest"]["allowed_tools"] == ["Read", "Bash(pdftotext:*)"]
    # The stdlib json module accepts it too: no orjson-only types leak into the dict.
    import json

    assert json.loads(json.dumps(d)) == d


def test_tuples_come_back_as_tuples() -> None:
    v = serialize.version_from_dict(orjson.loads(serialize.dumps(version())))
    assert isinstance(v.policy, tuple) and all(isinstance(p, tuple) for p in v.policy)
    assert isinstance(v.warnings, tuple) and isinstance(v.files, tuple)
    assert isinstance(v.manifest.allowed_tools, tuple)


def test_none_and_empty_allowed_tools_stay_distinct() -> None:
    none = version(manifest=Manifest(name="x", description="d", allowed_tools=None))
    empty = version(manifest=Manifest(name="x", description="d", allowed_tools=()))
    assert serialize.loads(serialize.dumps(none)).manifest.allowed_tools is None
    assert serialize.loads(serialize.dumps(empty)).manifest.allowed_tools == ()


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(hours=9), timedelta(hours=-3.5)])
def test_datetime_keeps_instant_and_offset(offset: timedelta) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(offset))
    got = serialize.loads(serialize.dumps(version(published_at=when))).published_at
    assert got == when and got.utcoffset() == offset and got.microsecond == 678901


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        serialize.dumps(version(published_at=datetime(2025, 1, 1)))


def test_unicode_and_control_characters_survive() -> None:
    text = '日本語 🚀 "q" \\ \x00 \u2028'
    m = Manifest(name="ü", description=text, metadata={"ключ": "значение"})
    v = version(name="ü", manifest=m, warnings=("⚠",))
    assert serialize.loads(serialize.dumps(v)) == v


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format=99),
        lambda d: d.pop("format"),
        lambda d: d.update(published_at="2025-01-01T00:00:00"),
        lambda d: d.update(policy=[["only", "three", "fields"]]),
        lambda d: d.pop("digest"),
    ],
)
def test_corrupt_or_foreign_data_is_rejected(mutate: Any) -> None:
    d = serialize.version_to_dict(version())
    mutate(d)
    with pytest.raises((ValueError, KeyError)):
        serialize.version_from_dict(d)


def test_loads_rejects_non_objects() -> None:
    with pytest.raises(ValueError):
        serialize.loads(b"[1, 2]")
