"""Invalid skills as data: every case in tests/cases/invalid_skills is rejected with exactly the
problems its expected.yaml lists (field equal, rule as a substring), and archives built here
with zipfile/tarfile are rejected for what they smuggle."""

from __future__ import annotations

import io
import shutil
import tarfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from skills_registry.archive import MAX_FILES
from skills_registry.manifest import Problem, SkillInvalid
from skills_registry.publish import load_skill

CASES = Path(__file__).parent.parent / "cases" / "invalid_skills"
CASE_DIRS = sorted(p for p in CASES.iterdir() if p.is_dir())
GOOD_SKILL_MD = b"---\nname: demo\ndescription: A demo skill.\n---\n# Demo\n"


def _skill_folder(case: Path) -> Path:
    (folder,) = [p for p in case.iterdir() if p.is_dir()]
    return folder


def _materialise(case: Path, expected: dict[str, Any], tmp_path: Path) -> Path:
    """Copy the case's skill folder, expanding a generate marker (so 1 MiB is never committed)."""
    source = _skill_folder(case)
    target = tmp_path / source.name
    shutil.copytree(source, target)
    generate = expected.get("generate")
    if generate:
        skill_md = target / "SKILL.md"
        filler = (generate["repeat"] * generate["times"]).encode()
        skill_md.write_bytes(skill_md.read_bytes().replace(generate["marker"].encode(), filler))
    return target


def _assert_problems(problems: list[Problem], expected: list[dict[str, str]]) -> None:
    """One-to-one: every expected problem is found, and nothing else is reported."""
    remaining = list(problems)
    for want in expected:
        match = next(
            (p for p in remaining if p.field == want["field"] and want["rule"] in p.rule), None
        )
        assert match is not None, f"missing {want} in {problems}"
        remaining.remove(match)
    assert not remaining, f"unexpected problems: {remaining}"


def test_there_are_enough_cases() -> None:
    assert len(CASE_DIRS) >= 35


@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_invalid_skill_folder(case: Path, tmp_path: Path) -> None:
    expected = yaml.safe_load((case / "expected.yaml").read_text(encoding="utf-8"))
    folder = _materialise(case, expected, tmp_path)
    with pytest.raises(SkillInvalid) as caught:
        load_skill(folder)
    problems = caught.value.problems
    _assert_problems(problems, expected["problems"])
    for problem in problems:  # values are for display: always short
        assert len(problem.value) <= 80


# A case without a SKILL.md has no text to send.
TEXT_CASES = [c for c in CASE_DIRS if (_skill_folder(c) / "SKILL.md").exists()]


@pytest.mark.parametrize("case", TEXT_CASES, ids=[p.name for p in TEXT_CASES])
def test_invalid_skill_md_as_bytes(case: Path, tmp_path: Path) -> None:
    """The same SKILL.md sent as text (no folder) fails too, minus the folder-name problem."""
    expected = yaml.safe_load((case / "expected.yaml").read_text(encoding="utf-8"))
    folder = _materialise(case, expected, tmp_path)
    text = (folder / "SKILL.md").read_bytes()
    wanted = [w for w in expected["problems"] if "folder name" not in w["rule"]]
    if not wanted:  # only the folder name was wrong: as bare text the skill is valid
        assert load_skill(text).manifest.name
        return
    with pytest.raises(SkillInvalid) as caught:
        load_skill(text)
    _assert_problems(caught.value.problems, wanted)


# --- archives -------------------------------------------------------------------------------


def _zip(entries: list[tuple[str, bytes]], symlinks: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are the point of one case
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            if name in symlinks:
                info.create_system = 3
                info.external_attr = (0o120777 << 16) & 0xFFFF0000
            archive.writestr(info, data)
    return buffer.getvalue()


def _tar(members: list[tarfile.TarInfo], payloads: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            data = payloads.get(member.name)
            if data is not None:
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _tar_with(extra: tarfile.TarInfo) -> bytes:
    return _tar([_member("demo/SKILL.md"), extra], {"demo/SKILL.md": GOOD_SKILL_MD})


ARCHIVES: dict[str, tuple[Callable[[], bytes], tuple[str, str]]] = {
    "zip-traversal": (
        lambda: _zip([("demo/SKILL.md", GOOD_SKILL_MD), ("demo/../../etc/cron.d/x", b"x")]),
        ("archive", "path traversal"),
    ),
    "zip-absolute": (
        lambda: _zip([("demo/SKILL.md", GOOD_SKILL_MD), ("/etc/passwd", b"x")]),
        ("archive", "absolute path"),
    ),
    "zip-windows-drive": (
        lambda: _zip([("demo/SKILL.md", GOOD_SKILL_MD), ("C:/Windows/x", b"x")]),
        ("archive", "absolute path"),
    ),
    "zip-backslash": (
        lambda: _zip([("demo/SKILL.md", GOOD_SKILL_MD), ("demo\\..\\..\\x", b"x")]),
        ("archive", "backslash"),
    ),
    "zip-symlink": (
        lambda: _zip(
            [("demo/SKILL.md", GOOD_SKILL_MD), ("demo/link", b"/etc/passwd")], ("demo/link",)
        ),
        ("archive", "symbolic links"),
    ),
    "zip-too-many-files": (
        lambda: _zip(
            [("demo/SKILL.md", GOOD_SKILL_MD)] + [(f"demo/f{i}", b"") for i in range(MAX_FILES)]
        ),
        ("archive", f"more than {MAX_FILES} files"),
    ),
    "zip-duplicate": (
        lambda: _zip([("demo/SKILL.md", GOOD_SKILL_MD), ("demo/SKILL.md", b"---\n")]),
        ("archive", "duplicate path"),
    ),
    "zip-no-skill-md": (lambda: _zip([("demo/README.md", b"x")]), ("SKILL.md", "not found")),
    "zip-two-top-folders": (
        lambda: _zip([("a/SKILL.md", GOOD_SKILL_MD), ("b/SKILL.md", GOOD_SKILL_MD)]),
        ("SKILL.md", "not found"),
    ),
    "zip-corrupt": (lambda: b"PK\x03\x04" + b"\x00" * 64, ("archive", "not a readable zip")),
    "tar-traversal": (lambda: _tar_with(_member("demo/../../x")), ("archive", "path traversal")),
    "tar-absolute": (lambda: _tar_with(_member("/etc/x")), ("archive", "absolute path")),
    "tar-symlink": (
        lambda: _tar_with(_member("demo/link", tarfile.SYMTYPE, "/etc/passwd")),
        ("archive", "symbolic links"),
    ),
    "tar-hardlink": (
        lambda: _tar_with(_member("demo/link", tarfile.LNKTYPE, "demo/SKILL.md")),
        ("archive", "hard links"),
    ),
    "tar-fifo": (lambda: _tar_with(_member("demo/pipe", tarfile.FIFOTYPE)), ("archive", "FIFOs")),
    "tar-device": (lambda: _tar_with(_member("demo/dev", tarfile.CHRTYPE)), ("archive", "device")),
    "tar-too-many-files": (
        lambda: _tar(
            [_member("demo/SKILL.md")] + [_member(f"demo/f{i}") for i in range(MAX_FILES)],
            {"demo/SKILL.md": GOOD_SKILL_MD},
        ),
        ("archive", f"more than {MAX_FILES} files"),
    ),
    "tar-truncated": (
        lambda: b"\x1f\x8b\x08\x00" + b"\x00" * 10,
        ("archive", "not a readable tar.gz"),
    ),
    "neither-zip-nor-tar": (
        lambda: b"PK\x05\x06" + b"\x00" * 18,
        ("SKILL.md", "must start with YAML"),
    ),
}


@pytest.mark.parametrize("name", sorted(ARCHIVES))
def test_invalid_archive(name: str) -> None:
    build, (field, rule) = ARCHIVES[name]
    with pytest.raises(SkillInvalid) as caught:
        load_skill(build())
    assert any(p.field == field and rule in p.rule for p in caught.value.problems), (
        caught.value.problems
    )


def test_folder_with_symlink_is_rejected(tmp_path: Path) -> None:
    skill = tmp_path / "demo"
    skill.mkdir()
    (skill / "SKILL.md").write_bytes(GOOD_SKILL_MD)
    (skill / "secrets").symlink_to("/etc")
    with pytest.raises(SkillInvalid) as caught:
        load_skill(skill)
    assert caught.value.problems == [Problem("folder", "symbolic links are not allowed", "secrets")]


def test_folder_with_fifo_is_rejected(tmp_path: Path) -> None:
    import os

    skill = tmp_path / "demo"
    skill.mkdir()
    (skill / "SKILL.md").write_bytes(GOOD_SKILL_MD)
    os.mkfifo(skill / "pipe")
    with pytest.raises(SkillInvalid) as caught:
        load_skill(skill)
    assert caught.value.problems[0].rule.startswith("device files, FIFOs")
