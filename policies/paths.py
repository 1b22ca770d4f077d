"""Read/Edit path rules: normalise, anchor, then gitignore-style matching (pure).

Paths from tool inputs are normalised **before** matching: ``~`` and ``~/x`` use ``home``, a
relative path is joined to ``cwd``, then ``.``/``..`` and repeated slashes are resolved lexically
(``..`` above ``/`` stays at ``/``). Percent-escapes and backslashes are literal characters. A
path that needs an unknown anchor (``home`` or ``cwd`` is None), is empty, longer than 4096
characters or contains control characters never matches, so the call is denied.

Rule anchors (Claude Code's four, with the one it leaves undefined for skills defined here):

- ``//abs/**``: absolute from the filesystem root.
- ``~/x``: from ``home``.
- ``/x``: from the **project directory** (``project_dir``: the agent's project root, e.g.
  ``X-Project-Dir`` or Claude Code's primary working directory). Never the filesystem root.
- ``./x`` or ``x``: from ``cwd``. A pattern without a slash (``.env``, ``*.md``) matches at any
  depth below ``cwd``, as in gitignore.
- ``${CLAUDE_SKILL_DIR}``/``${CLAUDE_PROJECT_DIR}`` at the start: absolute from that directory.

An unknown anchor makes the rule match nothing. ``*`` and ``?`` stay within one path segment,
``**`` spans segments, ``[`` is literal. ``dir/**`` also covers ``dir`` itself. Symlinks are not
resolved (pure code, no filesystem); the agent's file tools may follow them.

Directory-wide reads (Grep ``path``, Glob ``path`` + ``pattern``) are allowed only when a rule
covers the **whole subtree** (``dir/**`` with ``dir`` at or above it); a Glob pattern with ``..``
after a glob character cannot be bounded and denies.
"""

from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass

__all__ = ["Anchors", "covers_subtree", "glob_root", "normalise_path", "path_matches"]

_MAX_PATH = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True, slots=True)
class Anchors:
    """What relative forms are anchored to; None = unknown (such rules and paths deny)."""

    cwd: str | None = None
    project_dir: str | None = None
    home: str | None = None
    skill_dir: str | None = None


def _clean(path: str) -> str:
    normal = posixpath.normpath(path)
    if normal.startswith("//"):  # POSIX keeps a leading '//' as-is; we do not
        normal = "/" + normal.lstrip("/")
    return normal


def _absolute_dir(value: str | None) -> str | None:
    if not value or not value.startswith("/") or _CONTROL.search(value):
        return None
    return _clean(value)


def normalise_path(path: object, anchors: Anchors) -> str | None:
    """Absolute, lexically normalised path, or None when it cannot be anchored or is invalid."""
    if not isinstance(path, str) or not path or len(path) > _MAX_PATH or _CONTROL.search(path):
        return None
    if path == "~" or path.startswith("~/"):
        home = _absolute_dir(anchors.home)
        if home is None:
            return None
        path = home + path[1:]
    elif path.startswith("~"):
        return None  # ~user: another user's home, never anchored
    elif not path.startswith("/"):
        cwd = _absolute_dir(anchors.cwd)
        if cwd is None:
            return None
        path = cwd + "/" + path
    return _clean(path)


def _substitute(spec: str, anchors: Anchors) -> str | None:
    for var, value in (("CLAUDE_SKILL_DIR", anchors.skill_dir),
                       ("CLAUDE_PROJECT_DIR", anchors.project_dir)):  # fmt: skip
        token = "${" + var + "}"
        if token in spec:
            directory = _absolute_dir(value)
            if directory is None or not spec.startswith(token) or spec.count(token) > 1:
                return None
            return "/" + directory + spec[len(token) :]  # '//' = absolute anchor
    return spec


@functools.lru_cache(maxsize=8192)
def absolute_pattern(spec: str, anchors: Anchors) -> str | None:
    """Resolve a rule's path pattern to an absolute pattern; None when its anchor is unknown."""
    resolved = _substitute(spec, anchors)
    base: str | None
    if resolved is None or "${" in resolved or _CONTROL.search(resolved):
        return None
    if resolved.startswith("//"):
        base, rest = "/", resolved[2:]
    elif resolved == "~" or resolved.startswith("~/"):
        base, rest = _absolute_dir(anchors.home), resolved[2:]
    elif resolved.startswith("~"):
        return None
    elif resolved.startswith("/"):
        base, rest = _absolute_dir(anchors.project_dir), resolved[1:]
    else:
        base, rest = _absolute_dir(anchors.cwd), resolved.removeprefix("./")
        if "/" not in rest.rstrip("/"):
            rest = "**/" + rest  # gitignore: a bare name matches at any depth
    if base is None:
        return None
    if rest.endswith("/"):
        rest += "**"
    return _clean(base + "/" + rest) if rest else base


@functools.lru_cache(maxsize=8192)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    segments = pattern.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            out.append("(?:/.*)?" if last else "(?:/[^/]*)*")
            continue
        piece = "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
                        for ch in segment)  # fmt: skip
        out.append(("/" if index else "") + piece)
    return re.compile("".join(out) + r"\Z")


def path_matches(path: str, spec: str, anchors: Anchors) -> bool:
    """Does a normalised absolute path match a rule's path pattern under these anchors?"""
    pattern = absolute_pattern(spec, anchors)
    if pattern is None:
        return False
    if pattern == "/":
        return path == "/"
    return _pattern_regex(pattern).match(path) is not None


def covers_subtree(root: str, spec: str, anchors: Anchors) -> bool:
    """Does the rule cover every path under the normalised directory ``root``?"""
    pattern = absolute_pattern(spec, anchors)
    if pattern is None or not pattern.endswith("/**"):
        return False
    prefix = pattern[:-3].split("/")
    if "**" in prefix:
        return False
    parts = root.split("/") if root != "/" else [""]
    if len(parts) < len(prefix):
        return False
    return all(
        _pattern_regex(seg).match(part) is not None if index else part == seg
        for index, (seg, part) in enumerate(zip(prefix, parts, strict=False))
    )


def glob_root(pattern: object, path: object, anchors: Anchors) -> str | None:
    """The directory a Glob call can reach (its ``path`` + the literal head of ``pattern``)."""
    if not isinstance(pattern, str) or not pattern or _CONTROL.search(pattern):
        return None
    base = normalise_path(path, anchors) if path is not None else normalise_path(".", anchors)
    if base is None:
        return None
    segments = pattern.split("/")
    head: list[str] = []
    for index, segment in enumerate(segments):
        if _GLOB.search(segment) or segment == "**" or index == len(segments) - 1:
            if ".." in segments[index:]:
                return None  # cannot bound a walk that climbs after a glob
            break
        head.append(segment)
    literal = "/".join(head)
    if pattern.startswith("/"):
        return normalise_path(literal or "/", anchors)
    return normalise_path(base + "/" + literal, anchors) if literal else base
