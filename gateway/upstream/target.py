"""Where and how to reach one provider: target, timeouts, pool limits and the header rules.

Split from client.py so the client module holds only the moving parts (session, reply, errors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
from yarl import URL

__all__ = [
    "DROPPED_REPLY_HEADERS",
    "FORWARDED_HEADERS",
    "FORWARDED_PREFIXES",
    "Kind",
    "PoolLimits",
    "ProviderTarget",
    "Timeouts",
]

Kind = Literal["anthropic", "openai"]
ANTHROPIC_VERSION_DEFAULT = "2023-06-01"

# Request headers a provider may see, per kind; all else (client credentials, cookies, hop-by-hop,
# x-skill, x-forwarded-*) is dropped. openai-organization/-project are left out on purpose:
# account scope belongs to the provider key (ProviderTarget.extra_headers), never to the client.
_COMMON = frozenset({"content-type", "accept", "user-agent", "idempotency-key"})
FORWARDED_HEADERS: Mapping[str, frozenset[str]] = {
    "anthropic": _COMMON | {"x-app"},
    "openai": _COMMON | {"openai-beta"},
}
FORWARDED_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "anthropic": ("anthropic-", "x-stainless-", "x-claude-code-"),
    "openai": ("x-stainless-",),
}
# Reply headers the edge must not copy: hop-by-hop, framing of a body we decoded, cookies,
# and headers the edge server sets itself.
# fmt: off
DROPPED_REPLY_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "content-encoding", "set-cookie", "date",
    "server", "alt-svc",
})
# fmt: on
_URL_CACHE_MAX = 64


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds per phase; None disables a phase. first_byte covers non-streamed generations."""

    connect: float | None = 10.0
    first_byte: float | None = 300.0
    idle: float | None = 120.0
    total: float | None = 900.0


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """Connection pool of one provider's session."""

    limit: int = 256  # simultaneous connections (0: unlimited); streams hold one each
    keepalive_timeout: float = 30.0
    dns_ttl: int = 300


@dataclass(frozen=True, slots=True)
class ProviderTarget:
    """Where and how to reach one provider. The key never shows in repr or errors."""

    name: str
    base_url: str  # e.g. https://api.anthropic.com; the request path is appended verbatim
    kind: Kind
    api_key: str = field(repr=False)
    timeouts: Timeouts = Timeouts()
    # Set on every request (e.g. openai-project); may hold secrets, so kept out of repr too.
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Derived once per target so that send() only looks them up.
    _fixed: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)
    _timeout: aiohttp.ClientTimeout = field(init=False, repr=False, compare=False)
    _urls: dict[str, URL] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FORWARDED_HEADERS:
            raise ValueError(f"provider {self.name!r}: unknown kind {self.kind!r}")
        url = URL(self.base_url)
        if url.scheme not in ("http", "https") or not url.host or url.user or url.password:
            raise ValueError(f"provider {self.name!r}: base_url must be http(s)://host[/prefix]")
        if not self.api_key or any(c in self.api_key for c in "\r\n\0"):
            raise ValueError(f"provider {self.name!r}: api_key is empty or has control characters")
        auth = ("x-api-key", self.api_key)
        if self.kind == "openai":
            auth = ("authorization", f"Bearer {self.api_key}")
        extra = tuple((k.lower(), v) for k, v in self.extra_headers)
        t = self.timeouts
        # aiohttp's sock_read starts as first_byte; UpstreamReply switches it to idle.
        timeout = aiohttp.ClientTimeout(total=t.total, connect=t.connect, sock_read=t.first_byte)
        object.__setattr__(self, "_fixed", (*extra, auth))
        object.__setattr__(self, "_timeout", timeout)
        object.__setattr__(self, "_urls", {})

    def url(self, path: str) -> URL:
        """base_url + path (path starts with '/', may carry a query); cached per path."""
        url = self._urls.get(path)
        if url is None:
            url = URL(self.base_url.rstrip("/") + path)
            if len(self._urls) < _URL_CACHE_MAX:  # paths come from clients: bound the cache
                self._urls[path] = url
        return url

    def forward_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The request headers this provider gets: the allowlisted client ones plus its own."""
        allowed = FORWARDED_HEADERS[self.kind]
        prefixes = FORWARDED_PREFIXES[self.kind]
        out: dict[str, str] = {}
        nominated = ""
        for name, value in headers.items():
            key = name.lower()
            if key in allowed or key.startswith(prefixes):
                out[key] = value
            elif key == "connection":
                nominated = value
        for token in nominated.split(","):  # RFC 9110 7.6.1: named in Connection = hop-by-hop
            out.pop(token.strip().lower(), None)
        if self.kind == "anthropic" and "anthropic-version" not in out:
            out["anthropic-version"] = ANTHROPIC_VERSION_DEFAULT
        out.setdefault("content-type", "application/json")  # aiohttp would say octet-stream
        out.update(self._fixed)  # last: nothing from the client overrides the key
        return out
