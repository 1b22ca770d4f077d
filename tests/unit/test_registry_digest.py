"""Folder digest: stable, order-independent input, and unambiguous framing."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from skills_registry.digest import folder_digest


def test_format() -> None:
    digest = folder_digest({"SKILL.md": b"x"})
    assert digest.startswith("sha256:")
    assert len(digest) == len("sha256:") + 64


def test_known_value_is_stable() -> None:
    # Pinned: a change here changes every stored digest, so it must be deliberate.
    expected = hashlib.sha256(
        b"skillwarden-folder-digest-v1\x00"
        + (1).to_bytes(8, "big")
        + (8).to_bytes(8, "big") + b"SKILL.md"
        + (1).to_bytes(8, "big") + b"x"
    ).hexdigest()  # fmt: skip
    assert folder_digest({"SKILL.md": b"x"}) == "sha256:" + expected


def test_insertion_order_does_not_matter() -> None:
    a = {"b.txt": b"2", "SKILL.md": b"1", "a/c": b"3"}
    assert folder_digest(a) == folder_digest(dict(reversed(list(a.items()))))


def test_moving_bytes_between_files_changes_the_digest() -> None:
    assert folder_digest({"a": b"xy", "b": b"z"}) != folder_digest({"a": b"x", "b": b"yz"})


def test_moving_bytes_between_path_and_content_changes_the_digest() -> None:
    assert folder_digest({"ab": b"c"}) != folder_digest({"a": b"bc"})


def test_empty_file_is_not_the_same_as_no_file() -> None:
    assert folder_digest({"SKILL.md": b"x"}) != folder_digest({"SKILL.md": b"x", "e": b""})


def test_renaming_changes_the_digest() -> None:
    assert folder_digest({"a": b"x"}) != folder_digest({"b": b"x"})


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.binary(max_size=8), max_size=4),
    st.dictionaries(st.text(min_size=1, max_size=8), st.binary(max_size=8), max_size=4),
)
def test_different_folders_never_collide(a: dict[str, bytes], b: dict[str, bytes]) -> None:
    if a != b:
        assert folder_digest(a) != folder_digest(b)
