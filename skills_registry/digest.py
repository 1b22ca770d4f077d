"""Content digest of a skill folder: one sha256 over every file's path and bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

__all__ = ["DIGEST_PREFIX", "folder_digest"]

DIGEST_PREFIX = "sha256:"
# Versioned domain tag: if the framing ever changes, old and new digests can never collide.
_DOMAIN = b"skillwarden-folder-digest-v1\x00"


def _length(value: bytes) -> bytes:
    return len(value).to_bytes(8, "big")


def folder_digest(files: Mapping[str, bytes]) -> str:
    """Return "sha256:<hex>" over files in sorted path order, each path and content length-prefixed.

    Length prefixes make the framing unambiguous: moving bytes from one file to the next, or
    from a path into content, always changes the digest.
    """
    hasher = hashlib.sha256(_DOMAIN)
    hasher.update(len(files).to_bytes(8, "big"))
    # Sort by UTF-8 bytes so every platform and locale sees the same order.
    for path in sorted(files, key=lambda p: p.encode("utf-8")):
        encoded = path.encode("utf-8")
        content = files[path]
        hasher.update(_length(encoded))
        hasher.update(encoded)
        hasher.update(_length(content))
        hasher.update(content)
    return DIGEST_PREFIX + hasher.hexdigest()
