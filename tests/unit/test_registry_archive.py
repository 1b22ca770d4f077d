"""Archives and folders read into memory: unwrapping, caps, bombs, unsafe members."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from skills_registry import archive
from skills_registry.archive import (
    MAX_FILE_BYTES,
    MAX_TOTAL_BYTES,
    SkillFiles,
    clean_path,
    read_archive,
    read_folder,
    read_tar_gz,
    read_zip,
)
from skills_registry.manifest import SkillInvalid

SKILL = b"---\nname: code-review\ndescription: x\n---\n"


def make_zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def make_tar_gz(files: dict[str, bytes], with_dirs: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        if with_dirs:
            folder = tarfile.TarInfo("./code-review")
            folder.type = tarfile.DIRTYPE
            tf.addfile(folder)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _rules(exc: pytest.ExceptionInfo[SkillInvalid]) -> list[str]:
    return [p.rule for p in exc.value.problems]


def test_zip_with_top_folder_is_unwrapped() -> None:
    data = make_zip({"code-review/SKILL.md": SKILL, "code-review/scripts/run.sh": b"echo"})
    assert read_zip(data) == SkillFiles(
        {"SKILL.md": SKILL, "scripts/run.sh": b"echo"}, "code-review"
    )


def test_zip_with_skill_md_at_root_has_no_folder_name() -> None:
    assert read_zip(make_zip({"SKILL.md": SKILL, "a/b.txt": b"b"})).folder_name is None


def test_zip_directory_entries_and_macos_junk_are_skipped() -> None:
    data = make_zip(
        {
            "code-review/": b"",
            "code-review/SKILL.md": SKILL,
            "__MACOSX/code-review/._SKILL.md": b"x",
        }
    )
    assert read_zip(data).files == {"SKILL.md": SKILL}


def test_tar_gz_with_dot_prefix_and_directories() -> None:
    data = make_tar_gz({"./code-review/SKILL.md": SKILL}, with_dirs=True)
    assert read_tar_gz(data) == SkillFiles({"SKILL.md": SKILL}, "code-review")


def test_read_archive_sniffs_the_format() -> None:
    assert read_archive(make_zip({"SKILL.md": SKILL})).files == {"SKILL.md": SKILL}
    assert read_archive(make_tar_gz({"SKILL.md": SKILL})).files == {"SKILL.md": SKILL}
    with pytest.raises(SkillInvalid):
        read_archive(b"plain text")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b.txt", ("a/b.txt", None)),
        ("./a//b.txt", ("a/b.txt", None)),
        ("a/", ("a/", None)),
        ("./", ("", None)),
        ("../x", (None, "path traversal ('..')")),
        ("a/../../x", (None, "path traversal ('..')")),
        ("/etc/passwd", (None, "absolute path")),
        ("C:/x", (None, "absolute path")),
        ("a\\b", (None, "backslash in path (use '/')")),
        ("a\x00b", (None, "control character in path")),
        ("x" * 600, (None, "path longer than 512 characters")),
        ("bad\udcff", (None, "path is not valid UTF-8")),
    ],
)
def test_clean_path(name: str, expected: tuple[str | None, str | None]) -> None:
    assert clean_path(name) == expected


def test_zip_bomb_stops_at_the_file_cap() -> None:
    data = make_zip({"SKILL.md": SKILL, "bomb.bin": b"\0" * (MAX_FILE_BYTES + 1)})
    assert len(data) < 100_000  # tiny on the wire
    with pytest.raises(SkillInvalid) as caught:
        read_zip(data)
    assert _rules(caught) == [f"file larger than {MAX_FILE_BYTES} bytes"]


def test_zip_that_lies_about_its_size_is_refused() -> None:
    # Declared (header) sizes say 100 bytes, the stream inflates to 50,000: never trusted.
    data = bytearray(make_zip({"SKILL.md": SKILL, "big.bin": b"\0" * 50_000}))
    for signature, name_at, size_at in ((b"PK\x03\x04", 30, 22), (b"PK\x01\x02", 46, 24)):
        at = data.index(signature)
        while data[at + name_at : at + name_at + 7] != b"big.bin":
            at = data.index(signature, at + 1)
        data[at + size_at : at + size_at + 4] = (100).to_bytes(4, "little")
    with pytest.raises(SkillInvalid) as caught:
        read_zip(bytes(data))
    assert caught.value.problems[0].field == "archive"


def test_bytes_are_counted_as_they_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_FILE_BYTES", 1000)
    collector = archive._Collector()
    collector.add("big.bin", iter([b"\0" * 600, b"\0" * 600]))
    assert [p.rule for p in collector.problems] == ["file larger than 1000 bytes"]
    assert "big.bin" not in collector.files


def test_total_size_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 2000)
    data = make_zip({"SKILL.md": SKILL, "a": b"a" * 1000, "b": b"b" * 1000})
    with pytest.raises(SkillInvalid) as caught:
        read_zip(data)
    assert _rules(caught) == ["files larger than 2000 bytes in total"]


def test_gzip_bomb_stops_at_the_decompression_cap() -> None:
    # Not a tar at all: just a gzip stream that inflates far beyond every cap.
    bomb = gzip.compress(b"\0" * (MAX_TOTAL_BYTES + 3 * 1024 * 1024), compresslevel=9)
    with pytest.raises(SkillInvalid) as caught:
        read_tar_gz(bomb)
    assert _rules(caught)[0].startswith("expands to more than")


def test_oversized_archive_is_refused_unread() -> None:
    with pytest.raises(SkillInvalid) as caught:
        read_zip(b"PK\x03\x04" + b"\0" * MAX_TOTAL_BYTES)
    assert _rules(caught) == [f"larger than {MAX_TOTAL_BYTES} bytes"]


def test_all_unsafe_members_are_listed_together() -> None:
    data = make_zip({"SKILL.md": SKILL, "../a": b"", "/b": b"", "c/../../d": b""})
    with pytest.raises(SkillInvalid) as caught:
        read_zip(data)
    assert sorted(p.value for p in caught.value.problems) == ["../a", "/b", "c/../../d"]


def test_folder_is_read_with_its_name(tmp_path: Path) -> None:
    skill = tmp_path / "code-review"
    (skill / "scripts").mkdir(parents=True)
    (skill / "SKILL.md").write_bytes(SKILL)
    (skill / "scripts" / "run.sh").write_bytes(b"echo")
    assert read_folder(skill) == SkillFiles(
        {"SKILL.md": SKILL, "scripts/run.sh": b"echo"}, "code-review"
    )


def test_folder_given_as_dot_uses_the_real_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skill = tmp_path / "code-review"
    skill.mkdir()
    (skill / "SKILL.md").write_bytes(SKILL)
    monkeypatch.chdir(skill)
    assert read_folder(Path(".")).folder_name == "code-review"


def test_folder_symlink_pointing_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    skill = tmp_path / "code-review"
    skill.mkdir()
    (skill / "SKILL.md").write_bytes(SKILL)
    (skill / "escape").symlink_to(outside)
    (skill / "file-link").symlink_to(outside / "secret")
    with pytest.raises(SkillInvalid) as caught:
        read_folder(skill)
    assert sorted(p.value for p in caught.value.problems) == ["escape", "file-link"]


def test_folder_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive, "MAX_FILES", 3)
    skill = tmp_path / "code-review"
    skill.mkdir()
    (skill / "SKILL.md").write_bytes(SKILL)
    for i in range(5):
        (skill / f"f{i}").write_bytes(b"x")
    with pytest.raises(SkillInvalid) as caught:
        read_folder(skill)
    assert _rules(caught) == ["more than 3 files"]


def test_folder_without_skill_md_or_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(SkillInvalid) as caught:
        read_folder(tmp_path)
    assert caught.value.problems[0].field == "SKILL.md"
    with pytest.raises(SkillInvalid):
        read_folder(tmp_path / "missing")


def test_tar_gz_with_nul_padding_and_concatenated_members() -> None:
    data = make_tar_gz({"SKILL.md": SKILL})
    assert read_tar_gz(data + b"\0" * 512).files == {"SKILL.md": SKILL}
    assert read_tar_gz(data + gzip.compress(b"")).files == {"SKILL.md": SKILL}


def test_truncated_gzip_is_a_problem() -> None:
    with pytest.raises(SkillInvalid) as caught:
        read_tar_gz(make_tar_gz({"SKILL.md": SKILL})[:-20])
    assert caught.value.problems[0].rule == "is not a readable tar.gz file"
