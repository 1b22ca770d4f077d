"""Publish a skill: read the source, validate it, digest it, pick a version, compile, store.

Nothing is stored unless every check passes; SkillInvalid carries every problem found.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from policies.rules import parse_rule, policy_line
from skills_registry.archive import (
    MAX_FILE_BYTES,
    MAX_TOTAL_BYTES,
    SkillFiles,
    read_archive,
    read_folder,
)
from skills_registry.compile import compile_policy
from skills_registry.digest import folder_digest
from skills_registry.manifest import Manifest, Problem, PublishResult, SkillInvalid, SkillVersion
from skills_registry.parse import display, parse_skill_md
from skills_registry.store import SkillStore, VersionConflict, open_skill_store
from skills_registry.validate import validate_frontmatter

__all__ = ["ARCHIVE_SUFFIXES", "LoadedSkill", "load_skill", "publish_skill", "publish_skill_sync"]

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
_ZIP_MAGIC = b"PK\x03\x04"
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, slots=True)
class LoadedSkill:
    """A skill that passed every store-independent check."""

    manifest: Manifest
    files: dict[str, bytes]
    digest: str
    folder_name: str | None


def _invalid(field: str, rule: str, value: object = "") -> SkillInvalid:
    return SkillInvalid([Problem(field, rule, display(value))])


def _read_bytes(data: bytes, filename: str | None) -> SkillFiles:
    name = (filename or "").lower()
    if name.endswith(".zip") and not data.startswith(_ZIP_MAGIC):
        raise _invalid("archive", "is named .zip but is not a zip file", filename)
    if name.endswith((".tar.gz", ".tgz")) and not data.startswith(_GZIP_MAGIC):
        raise _invalid("archive", "is named .tar.gz but is not gzip-compressed", filename)
    if data.startswith((_ZIP_MAGIC, _GZIP_MAGIC)):
        return read_archive(data)
    if len(data) > MAX_FILE_BYTES:
        raise _invalid("SKILL.md", f"must be at most {MAX_FILE_BYTES} bytes", f"{len(data)} bytes")
    return SkillFiles({"SKILL.md": data}, None)  # bare SKILL.md text: no folder to match


def _read_path(path: Path) -> SkillFiles:
    if path.is_dir():
        return read_folder(path)
    if not path.is_file():
        raise _invalid("source", "does not exist", str(path))
    if path.name == "SKILL.md":
        return read_folder(path.parent)  # the skill is the folder around it
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        rule = "must be a skill folder, a SKILL.md file or a .zip/.tar.gz/.tgz archive"
        raise _invalid("source", rule, str(path))
    try:
        size = path.stat().st_size
        if size > MAX_TOTAL_BYTES:
            raise _invalid("archive", f"larger than {MAX_TOTAL_BYTES} bytes", f"{size} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise _invalid("source", "cannot be read", f"{path}: {exc.strerror}") from None
    return _read_bytes(data, path.name)


def load_skill(source: Path | bytes, *, filename: str | None = None) -> LoadedSkill:
    """Read and check a skill without a store: a folder, an archive (path or bytes) or SKILL.md
    text. SkillInvalid lists every problem; nothing else escapes for bad input."""
    files = _read_bytes(source, filename) if isinstance(source, bytes) else _read_path(source)
    parsed = parse_skill_md(files.files["SKILL.md"])
    problems = list(parsed.problems)
    manifest: Manifest | None = None
    if parsed.frontmatter is not None:
        manifest, more = validate_frontmatter(
            parsed.frontmatter, parsed.body, folder_name=files.folder_name
        )
        problems.extend(more)
    if problems or manifest is None:
        raise SkillInvalid(problems)
    return LoadedSkill(manifest, files.files, folder_digest(files.files), files.folder_name)


def _pick_version(manifest: Manifest, existing: list[SkillVersion]) -> str:
    taken = {v.version for v in existing}
    explicit = manifest.metadata.get("version")
    if explicit is not None:
        if explicit in taken:
            rule = "version already exists with different content; change metadata.version"
            raise _invalid("metadata.version", rule, f"{manifest.name}@{explicit}")
        return explicit
    number = len(existing) + 1
    while str(number) in taken:  # explicit versions may already use small integers
        number += 1
    return str(number)


def _added_tools(entries: tuple[str, ...], previous: SkillVersion | None) -> tuple[str, ...]:
    """Entries whose compiled rule the previous version lacked (all of them for a first one).

    Compared as (tool, kind, spec), so rewriting `Bash(git:*)` as `Bash(git *)` adds nothing.
    """
    before = {line[1:] for line in previous.policy} if previous is not None else set()
    added: dict[str, None] = {}
    for entry in entries:
        if policy_line("", parse_rule(entry))[1:] not in before:
            added[entry] = None
    return tuple(added)


async def publish_skill(
    store: SkillStore, source: Path | bytes, *, publisher: str, filename: str | None = None
) -> PublishResult:
    """Validate and store one skill version; SkillInvalid lists every problem, storing nothing.

    source: a folder, a .zip/.tar.gz/.tgz path, or bytes (zip if they start with PK\\x03\\x04,
    tar.gz if with \\x1f\\x8b, else SKILL.md text, which has no folder name to check).
    Versions: metadata.version when given (it must be new for new content); otherwise
    automatic: "1", "2", ..., the count of existing versions plus one, skipping any taken.
    The same content (same digest) again stores nothing: status "unchanged", existing version.
    added_tools lists allowed-tools entries the latest stored version did not grant.
    """
    loaded = load_skill(source, filename=filename)
    name = loaded.manifest.name
    existing = await store.find_by_digest(name, loaded.digest)
    if existing is not None:
        return PublishResult("unchanged", existing, (), existing.warnings)
    versions = await store.list_versions(name)
    version = _pick_version(loaded.manifest, versions)
    entries = loaded.manifest.allowed_tools or ()
    compiled = compile_policy(f"{name}@{version}", entries)
    previous = await store.get_version(name)
    skill_version = SkillVersion(
        name=name,
        version=version,
        digest=loaded.digest,
        publisher=publisher,
        published_at=datetime.now(UTC),
        manifest=loaded.manifest,
        policy=compiled.lines,
        warnings=compiled.warnings,
        files=tuple(sorted(loaded.files)),
    )
    try:
        await store.put_version(skill_version)
    except VersionConflict:  # a concurrent publish took this version first
        raced = await store.find_by_digest(name, loaded.digest)
        if raced is not None:
            return PublishResult("unchanged", raced, (), raced.warnings)
        raise _invalid("version", "was just published by someone else; retry", version) from None
    added = _added_tools(entries, previous)
    return PublishResult("published", skill_version, added, compiled.warnings)


def publish_skill_sync(
    store_url: str, source: Path | bytes, *, publisher: str, filename: str | None = None
) -> PublishResult:
    """For scripts and the CLI: open the store at store_url, publish, close."""

    async def run() -> PublishResult:
        store = open_skill_store(store_url)
        await store.open()
        try:
            return await publish_skill(store, source, publisher=publisher, filename=filename)
        finally:
            await store.close()

    return asyncio.run(run())
