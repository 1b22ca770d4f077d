"""publish_skill against the real SQLite store: sources, versions, unchanged, added_tools."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skills_registry.manifest import SkillInvalid
from skills_registry.publish import load_skill, publish_skill, publish_skill_sync
from skills_registry.store import SkillStore, open_skill_store

SAMPLES = Path(__file__).resolve().parents[2] / "sample_skills"


def skill_md(name: str = "code-review", tools: str = "Read Grep", extra: str = "") -> bytes:
    return (
        f"---\nname: {name}\ndescription: Reviews code.\nallowed-tools: {tools}\n{extra}"
        "---\n# Review\n"
    ).encode()


def write_skill(root: Path, content: bytes, name: str = "code-review") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_bytes(content)
    return folder


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SkillStore]:
    opened = open_skill_store(f"sqlite:///{tmp_path / 'registry.db'}")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def test_publish_folder(store: SkillStore, tmp_path: Path) -> None:
    folder = write_skill(tmp_path, skill_md(tools="Bash(git add *) Bash(git commit *) Write(x)"))
    (folder / "scripts").mkdir()
    (folder / "scripts" / "run.sh").write_bytes(b"echo hi\n")
    result = await publish_skill(store, folder, publisher="alice")
    version = result.version
    assert result.status == "published"
    assert version.ref == "code-review@1"
    assert version.publisher == "alice"
    assert version.digest.startswith("sha256:")
    assert version.files == ("SKILL.md", "scripts/run.sh")
    assert version.policy == (
        ("code-review@1", "Bash", "bash", "git add *"),
        ("code-review@1", "Bash", "bash", "git commit *"),
        ("code-review@1", "Write", "literal", "x"),
    )
    assert result.added_tools == ("Bash(git add *)", "Bash(git commit *)", "Write(x)")
    assert result.warnings and "never consults path rules on Write" in result.warnings[0]
    assert version.warnings == result.warnings
    assert version.published_at.tzinfo is not None
    assert await store.get_version("code-review") == version


async def test_same_digest_is_unchanged_and_stores_nothing(
    store: SkillStore, tmp_path: Path
) -> None:
    folder = write_skill(tmp_path, skill_md())
    first = await publish_skill(store, folder, publisher="alice")
    again = await publish_skill(store, folder, publisher="bob")
    assert again.status == "unchanged"
    assert again.version == first.version
    assert again.added_tools == ()
    assert len(await store.list_versions("code-review")) == 1


async def test_same_content_from_folder_zip_tar_and_text_has_one_digest(
    store: SkillStore, tmp_path: Path
) -> None:
    content = skill_md()
    folder = write_skill(tmp_path, content)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("code-review/SKILL.md", content)
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w:gz") as tf:
        info = tarfile.TarInfo("code-review/SKILL.md")
        info.size = len(content)
        tf.addfile(info, io.BytesIO(content))
    archive_path = tmp_path / "upload.tgz"
    archive_path.write_bytes(tarred.getvalue())
    first = await publish_skill(store, folder, publisher="a")
    for source in (zipped.getvalue(), archive_path, content, folder / "SKILL.md"):
        result = await publish_skill(store, source, publisher="a")
        assert result.status == "unchanged"
        assert result.version.digest == first.version.digest


async def test_automatic_versions_count_up(store: SkillStore, tmp_path: Path) -> None:
    refs = []
    for tools in ("Read", "Read Grep", "Read Grep Glob"):
        result = await publish_skill(store, skill_md(tools=tools), publisher="a")
        refs.append(result.version.ref)
    assert refs == ["code-review@1", "code-review@2", "code-review@3"]


async def test_automatic_version_skips_numbers_taken_explicitly(store: SkillStore) -> None:
    await publish_skill(store, skill_md(extra="metadata:\n  version: '2'\n"), publisher="a")
    first_auto = await publish_skill(store, skill_md(tools="Grep"), publisher="a")
    second_auto = await publish_skill(store, skill_md(tools="Glob"), publisher="a")
    assert first_auto.version.version == "3"  # "2" is taken, and there is 1 version before
    assert second_auto.version.version == "4"


async def test_explicit_version(store: SkillStore) -> None:
    extra = "metadata:\n  version: 1.4.0\n"
    result = await publish_skill(store, skill_md(extra=extra), publisher="a")
    assert result.version.ref == "code-review@1.4.0"
    assert result.version.policy[0][0] == "code-review@1.4.0"


async def test_explicit_version_with_other_content_is_a_problem(store: SkillStore) -> None:
    extra = "metadata:\n  version: 1.4.0\n"
    await publish_skill(store, skill_md(extra=extra), publisher="a")
    with pytest.raises(SkillInvalid) as caught:
        await publish_skill(store, skill_md(tools="Bash", extra=extra), publisher="a")
    (problem,) = caught.value.problems
    assert problem.field == "metadata.version"
    assert "already exists" in problem.rule
    assert problem.value == "code-review@1.4.0"
    assert len(await store.list_versions("code-review")) == 1


async def test_added_tools_against_the_latest_version(store: SkillStore) -> None:
    await publish_skill(store, skill_md(tools="Read Bash(git:*)"), publisher="a")
    result = await publish_skill(
        store, skill_md(tools="Read, Bash(git *) Bash(curl *) WebFetch"), publisher="a"
    )
    # Bash(git *) is Bash(git:*) rewritten: not a new grant.
    assert result.added_tools == ("Bash(curl *)", "WebFetch")
    fewer = await publish_skill(store, skill_md(tools="Read"), publisher="a")
    assert fewer.added_tools == ()


async def test_invalid_skill_stores_nothing(store: SkillStore) -> None:
    with pytest.raises(SkillInvalid) as caught:
        await publish_skill(store, skill_md(name="Code-Review", tools="Bash("), publisher="a")
    assert {p.field for p in caught.value.problems} == {"name", "allowed-tools"}
    assert await store.list_latest() == []


async def test_bare_text_skips_the_folder_check(store: SkillStore) -> None:
    result = await publish_skill(store, skill_md(name="anything"), publisher="a")
    assert result.version.name == "anything"


async def test_filename_hint_must_match_the_content(store: SkillStore) -> None:
    with pytest.raises(SkillInvalid) as caught:
        await publish_skill(store, skill_md(), publisher="a", filename="skill.zip")
    assert caught.value.problems[0].rule == "is named .zip but is not a zip file"


@pytest.mark.parametrize("name", ["missing", "notes.txt"])
async def test_bad_source_paths(store: SkillStore, tmp_path: Path, name: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SkillInvalid) as caught:
        await publish_skill(store, tmp_path / name, publisher="a")
    assert caught.value.problems[0].field == "source"


async def test_sample_skills_publish_cleanly(store: SkillStore) -> None:
    folders = sorted(p for p in SAMPLES.iterdir() if (p / "SKILL.md").is_file())
    assert folders
    for folder in folders:
        result = await publish_skill(store, folder, publisher="samples")
        assert result.status == "published", folder
        assert result.version.name == folder.name


def test_load_skill_needs_no_store(tmp_path: Path) -> None:
    loaded = load_skill(write_skill(tmp_path, skill_md()))
    assert loaded.folder_name == "code-review"
    assert loaded.manifest.allowed_tools == ("Read", "Grep")
    assert loaded.files == {"SKILL.md": skill_md()}


def test_publish_skill_sync(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sync.db'}"
    first = publish_skill_sync(url, skill_md(), publisher="cli")
    second = publish_skill_sync(url, skill_md(), publisher="cli")
    assert (first.status, second.status) == ("published", "unchanged")
