"""Read a skill folder from a zip, a tar.gz or a directory into memory, within fixed caps.

Nothing is ever written to disk. Every unsafe member (traversal, absolute path, link, device,
oversized) is reported as a Problem; SkillInvalid lists all of them at once.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from skills_registry.manifest import Problem, SkillInvalid
from skills_registry.parse import display

__all__ = [
    "MAX_FILES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_PATH_CHARS",
    "MAX_TOTAL_BYTES",
    "SkillFiles",
    "read_archive",
    "read_folder",
    "read_tar_gz",
    "read_zip",
]

MAX_FILES = 1000
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_TOTAL_BYTES = 20 * 1024 * 1024
MAX_PATH_CHARS = 512
MAX_DEPTH = 32
_FIELD = "archive"
_CHUNK = 64 * 1024
# Finder adds these to every zip it makes; they are never part of the skill.
_IGNORED_PREFIX = "__MACOSX/"


@dataclass(frozen=True, slots=True)
class SkillFiles:
    """Relative POSIX path -> bytes; folder_name is the wrapping folder's name, if there was one."""

    files: dict[str, bytes]
    folder_name: str | None = None


class _Collector:
    """Gathers files and problems, enforcing the caps as bytes arrive."""

    def __init__(self, field: str = _FIELD) -> None:
        self.field = field
        self.files: dict[str, bytes] = {}
        self.problems: list[Problem] = []
        self.total = 0
        self.fatal = False  # a cap was hit: stop reading instead of listing thousands of members

    def problem(self, rule: str, value: str = "") -> None:
        self.problems.append(Problem(self.field, rule, display(value)))

    def check_size(self, path: str, declared: int) -> bool:
        if declared > MAX_FILE_BYTES:
            self.problem(f"file larger than {MAX_FILE_BYTES} bytes", path)
            return False
        if self.total + declared > MAX_TOTAL_BYTES:
            self.problem(f"files larger than {MAX_TOTAL_BYTES} bytes in total", path)
            self.fatal = True
            return False
        return True

    def add(self, path: str, chunks: Iterable[bytes]) -> None:
        """Store one file, counting actual bytes (a zip may lie about its sizes)."""
        if len(self.files) >= MAX_FILES:
            self.problem(f"more than {MAX_FILES} files", path)
            self.fatal = True
            return
        parts: list[bytes] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_FILE_BYTES or self.total + size > MAX_TOTAL_BYTES:
                self.check_size(path, size)
                return
            parts.append(chunk)
        self.total += size
        self.files[path] = b"".join(parts)


def clean_path(name: str) -> tuple[str | None, str | None]:
    """(normalised relative path, None) or (None, rule broken). Directories end with '/'."""
    if "\x00" in name or any(ord(ch) < 32 for ch in name):
        return None, "control character in path"
    if "\\" in name:
        return None, "backslash in path (use '/')"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None, "absolute path"
    if len(name) > MAX_PATH_CHARS:
        return None, f"path longer than {MAX_PATH_CHARS} characters"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None, "path is not valid UTF-8"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "path traversal ('..')"
    if not parts:
        return "", None  # the root itself ("./")
    return "/".join(parts) + ("/" if name.endswith("/") else ""), None


def _unwrap(collector: _Collector) -> SkillFiles:
    """Strip one top folder that wraps everything; SKILL.md must then be at the root."""
    if collector.problems:
        raise SkillInvalid(collector.problems)
    files = collector.files
    if "SKILL.md" in files:
        return SkillFiles(dict(files), None)
    tops = {path.split("/", 1)[0] for path in files}
    if len(tops) == 1 and all("/" in p for p in files):
        top = tops.pop()
        inner = {p[len(top) + 1 :]: data for p, data in files.items()}
        if "SKILL.md" in inner:
            return SkillFiles(inner, top)
    rule = "SKILL.md not found at the root or in a single top folder"
    raise SkillInvalid([Problem("SKILL.md", rule, display(", ".join(sorted(files)[:5])))])


def _accept_path(collector: _Collector, raw: str) -> str | None:
    path, broken = clean_path(raw)
    if broken is not None:
        collector.problem(broken, raw)
        return None
    if not path or path.endswith("/") or path.startswith(_IGNORED_PREFIX):
        return None
    if path in collector.files:
        collector.problem("duplicate path", raw)
        return None
    return path


def _zip_kind(info: zipfile.ZipInfo) -> str | None:
    """The rule a member breaks by its type, or None for a plain file or directory."""
    if info.flag_bits & 0x1:
        return "encrypted members are not allowed"
    mode = info.external_attr >> 16
    # Only Unix-made zips carry a file type, and many tools leave its bits at 0 (= plain file).
    if info.create_system != 3 or stat.S_IFMT(mode) == 0:
        return None
    if stat.S_ISLNK(mode):
        return "symbolic links are not allowed"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "device files, FIFOs and sockets are not allowed"
    return None


def _check_compressed_size(data: bytes) -> None:
    if len(data) > MAX_TOTAL_BYTES:
        raise SkillInvalid([Problem(_FIELD, f"larger than {MAX_TOTAL_BYTES} bytes")])


def _zip_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    with archive.open(info) as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def read_zip(data: bytes) -> SkillFiles:
    """Unpack a zip in memory; SkillInvalid lists every unsafe member."""
    collector = _Collector()
    _check_compressed_size(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_FILES:
                raise SkillInvalid([Problem(_FIELD, f"more than {MAX_FILES} files")])
            for info in members:
                if collector.fatal:
                    break
                path = _accept_path(collector, info.filename)
                kind = _zip_kind(info)
                if kind is not None:
                    collector.problem(kind, info.filename)
                elif path is not None and collector.check_size(path, info.file_size):
                    collector.add(path, _zip_chunks(archive, info))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, ValueError) as exc:
        raise SkillInvalid([Problem(_FIELD, "is not a readable zip file", str(exc))]) from None
    return _unwrap(collector)


def _gunzip(data: bytes) -> bytes:
    """Decompress with a hard cap, so a gzip bomb stops at the cap instead of filling memory."""
    limit = MAX_TOTAL_BYTES + MAX_FILES * 1024 + 1024 * 1024  # tar headers and padding
    out: list[bytes] = []
    size = 0
    while data:
        inflater = zlib.decompressobj(wbits=31)
        while data:
            chunk = inflater.decompress(data, limit - size + 1)
            size += len(chunk)
            out.append(chunk)
            if size > limit:
                raise SkillInvalid([Problem(_FIELD, f"expands to more than {limit} bytes")])
            data = inflater.unconsumed_tail
        # Concatenated gzip members may follow; NUL padding after the last one is tolerated.
        data = inflater.unused_data.lstrip(b"\x00")
        if not inflater.eof:
            raise SkillInvalid([Problem(_FIELD, "is not a readable tar.gz file", "truncated")])
    return b"".join(out)


def _tar_kind(member: tarfile.TarInfo) -> str | None:
    if member.issym():
        return "symbolic links are not allowed"
    if member.islnk():
        return "hard links are not allowed"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device files, FIFOs and sockets are not allowed"
    if not (member.isreg() or member.isdir()):
        return "unsupported member type"
    return None


def read_tar_gz(data: bytes) -> SkillFiles:
    """Unpack a gzip-compressed tar in memory; SkillInvalid lists every unsafe member."""
    collector = _Collector()
    _check_compressed_size(data)
    try:
        raw = _gunzip(data)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", encoding="utf-8") as archive:
            for count, member in enumerate(archive, start=1):
                if count > MAX_FILES:
                    collector.problem(f"more than {MAX_FILES} files")
                    break
                path = _accept_path(collector, member.name)
                kind = _tar_kind(member)
                if kind is not None:
                    collector.problem(kind, member.name)
                elif path is not None and member.isreg():
                    if collector.fatal or not collector.check_size(path, member.size):
                        break
                    handle = archive.extractfile(member)
                    if handle is not None:
                        collector.add(path, iter(partial(handle.read, _CHUNK), b""))
    except (tarfile.TarError, zlib.error, EOFError, OSError, ValueError) as exc:
        raise SkillInvalid([Problem(_FIELD, "is not a readable tar.gz file", str(exc))]) from None
    return _unwrap(collector)


def read_archive(data: bytes) -> SkillFiles:
    """Pick the format by its magic bytes: zip (PK\\x03\\x04) or gzip (\\x1f\\x8b)."""
    if data.startswith(b"PK\x03\x04"):
        return read_zip(data)
    if data.startswith(b"\x1f\x8b"):
        return read_tar_gz(data)
    raise SkillInvalid([Problem(_FIELD, "must be a .zip or a .tar.gz file")])


def _walk(collector: _Collector, root: Path, folder: Path, depth: int = 0) -> None:
    """Depth-first, links never followed: a symlink anywhere is a problem, not a detour."""
    if depth > MAX_DEPTH:
        collector.problem(f"folders nested deeper than {MAX_DEPTH} levels", str(folder))
        collector.fatal = True
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        collector.problem("cannot be read", f"{folder}: {exc.strerror}")
        return
    for entry in entries:
        if collector.fatal:
            return
        rel = Path(entry.path).relative_to(root).as_posix()
        if entry.is_symlink():
            collector.problem("symbolic links are not allowed", rel)
        elif entry.is_dir(follow_symlinks=False):
            _walk(collector, root, Path(entry.path), depth + 1)
        elif not entry.is_file(follow_symlinks=False):
            collector.problem("device files, FIFOs and sockets are not allowed", rel)
        else:
            _read_file(collector, rel, Path(entry.path))


def _read_file(collector: _Collector, rel: str, path: Path) -> None:
    clean, broken = clean_path(rel)
    if broken is not None or clean is None:
        collector.problem(broken or "invalid path", rel)
        return
    try:
        if not collector.check_size(rel, path.stat(follow_symlinks=False).st_size):
            return
        with path.open("rb") as handle:
            collector.add(clean, iter(partial(handle.read, _CHUNK), b""))
    except OSError as exc:
        collector.problem("cannot be read", f"{rel}: {exc.strerror}")


def read_folder(path: Path) -> SkillFiles:
    """Read a skill folder from disk under the same caps; its name is the folder name.

    The folder itself may be a symlink (the caller named it); links inside it are problems.
    """
    collector = _Collector("folder")
    if not path.is_dir():
        raise SkillInvalid([Problem("folder", "is not a directory", str(path))])
    root = path.resolve()
    _walk(collector, root, root)
    if collector.problems:
        raise SkillInvalid(collector.problems)
    if "SKILL.md" not in collector.files:
        raise SkillInvalid([Problem("SKILL.md", "is missing", str(path))])
    return SkillFiles(collector.files, Path(os.path.abspath(path)).name)
