"""policies.paths: normalisation, anchors, subtree coverage, Glob roots."""

from __future__ import annotations

import pytest

from policies.paths import Anchors, absolute_pattern, covers_subtree, glob_root, normalise_path

A = Anchors(cwd="/w/p/sub", project_dir="/w/p", home="/home/u", skill_dir="/s/d")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/a//b/./c/../d", "/a/b/d"), ("x/../../y", "/w/p/y"), ("~", "/home/u"),
     ("~/.ssh/k", "/home/u/.ssh/k"), ("~root/x", None), ("/../../etc", "/etc"),
     ("//etc/x", "/etc/x"), ("a%2F..", "/w/p/sub/a%2F.."), ("", None), ("a\nb", None)],
)  # fmt: skip
def test_normalise_path(path: str, expected: str | None) -> None:
    assert normalise_path(path, A) == expected


def test_unknown_anchors() -> None:
    assert normalise_path("x", Anchors()) is None
    assert normalise_path("~/x", Anchors()) is None
    assert normalise_path("/x", Anchors()) == "/x"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("//etc/**", "/etc/**"), ("~/n/*", "/home/u/n/*"), ("/docs/**", "/w/p/docs/**"),
     ("./src/**", "/w/p/sub/src/**"), ("src/**", "/w/p/sub/src/**"), (".env", "/w/p/sub/**/.env"),
     ("docs/", "/w/p/sub/**/docs/**"), ("${CLAUDE_SKILL_DIR}/r/**", "/s/d/r/**"),
     ("${CLAUDE_PROJECT_DIR}/o/**", "/w/p/o/**"), ("x/${CLAUDE_SKILL_DIR}", None),
     ("${HOME}/x", None), ("~u/x", None), ("../**", "/w/p/**")],
)  # fmt: skip
def test_absolute_pattern(spec: str, expected: str | None) -> None:
    assert absolute_pattern(spec, A) == expected


def test_project_anchor_unknown() -> None:
    assert absolute_pattern("/docs/**", Anchors(cwd="/w")) is None


@pytest.mark.parametrize(
    ("root", "spec", "expected"),
    [("/w/p/sub/src", "./src/**", True), ("/w/p/sub/src/a", "./src/**", True),
     ("/w/p/sub", "./src/**", False), ("/w/p/sub/src", "./src/*.py", False),
     ("/", "//**", True), ("/home/u/x", "//home/*/x/**", True), ("/w", "//**/x/**", False)],
)  # fmt: skip
def test_covers_subtree(root: str, spec: str, expected: bool) -> None:
    assert covers_subtree(root, spec, A) is expected


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [("**/*.py", None, "/w/p/sub"), ("src/**/*.py", None, "/w/p/sub/src"),
     ("/etc/*", "/w", "/etc"), ("*.py", "/x", "/x"), ("../*", "/x/y", "/x"),
     ("*/../..", "/x", None), ("", None, None)],
)  # fmt: skip
def test_glob_root(pattern: str, path: str | None, expected: str | None) -> None:
    assert glob_root(pattern, path, A) == expected
