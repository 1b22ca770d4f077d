"""Gateway API keys: the record, the store Protocol, key generation/hashing, the URL factory.

A key is shown once, at creation, and stored only as its SHA-256. A plain (unsalted, fast)
hash is enough because keys are 256 random bits, not passwords: nothing to brute-force, and
it makes lookup by hash possible, which a salted hash would not."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, get_args

import orjson

__all__ = [
    "KEY_PREFIX",
    "ApiKey",
    "ApiKeyStore",
    "KeyKind",
    "check_new_key",
    "hash_key",
    "hash_matches",
    "is_key_format",
    "new_key",
    "new_key_id",
    "open_key_store",
    "skills_from_json",
    "skills_to_json",
]

KeyKind = Literal["admin", "agent"]
KEY_PREFIX = "sk-sw-"
# secrets.token_urlsafe(32): 32 random bytes -> 43 base64url characters, no padding.
_KEY_RE = re.compile(r"sk-sw-[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What the gateway knows about a key; never the key itself."""

    id: str
    kind: KeyKind
    consumer: str
    skills: tuple[str, ...] | None  # None: every skill
    created_at: datetime  # timezone-aware UTC
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ApiKeyStore(Protocol):
    async def open(self) -> None:
        """Connect and create the schema if needed."""

    async def close(self) -> None: ...

    async def create(
        self, kind: KeyKind, consumer: str, skills: tuple[str, ...] | None
    ) -> tuple[ApiKey, str]:
        """A new key: its record and its plaintext, which is not kept and cannot be recovered."""

    async def verify(self, plaintext: str) -> ApiKey | None:
        """The active key with this plaintext, or None (unknown, malformed or revoked)."""

    async def list(self) -> builtins.list[ApiKey]:
        """Every key, revoked ones included, oldest first."""

    async def count(self, kind: KeyKind) -> int:
        """How many active (not revoked) keys of this kind exist."""

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such active key."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    """A public, non-secret handle for listing and revoking a key."""
    return "key_" + secrets.token_hex(8)


def is_key_format(plaintext: str) -> bool:
    return _KEY_RE.fullmatch(plaintext) is not None


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def hash_matches(stored: str, computed: str) -> bool:
    # The database found the row by hash equality already; comparing again in constant time
    # keeps the final yes/no free of timing leaks whatever the backend's comparison does.
    return hmac.compare_digest(stored.encode(), computed.encode())


def check_new_key(kind: str, consumer: str, skills: tuple[str, ...] | None) -> None:
    """Refuse records that would silently mean something else (e.g. a string as skills)."""
    if kind not in get_args(KeyKind):
        raise ValueError(f"key kind must be admin or agent, not {kind!r}")
    if not consumer or not consumer.strip():
        raise ValueError("consumer must not be empty")
    if skills is not None and (
        not isinstance(skills, tuple) or not all(isinstance(s, str) and s for s in skills)
    ):
        raise ValueError("skills must be None or a tuple of skill names")


def skills_to_json(skills: tuple[str, ...] | None) -> str | None:
    return None if skills is None else orjson.dumps(list(skills)).decode()


def skills_from_json(raw: str | None) -> tuple[str, ...] | None:
    return None if raw is None else tuple(orjson.loads(raw))


def open_key_store(url: str) -> ApiKeyStore:
    """sqlite:///path (or sqlite:///:memory:) or postgresql://..."""
    if url.startswith("sqlite:"):
        from gateway.state.keys_sqlite import SqliteKeyStore

        return SqliteKeyStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        from gateway.state.keys_postgres import PostgresKeyStore

        return PostgresKeyStore(url)
    raise ValueError(f"unsupported storage URL scheme: {url.split(':', 1)[0]!r}")
