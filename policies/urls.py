"""WebFetch ``domain:`` rules: parse the URL, normalise the host, match host only (pure).

A URL is accepted for matching only when it parses cleanly:

- ``urllib.parse.urlsplit``; scheme must be ``http`` or ``https``; no whitespace, control
  characters or backslashes anywhere (browsers and fetchers disagree on ``\\``); at most 8 KiB.
- **Userinfo denies** (``https://example.com@evil.com`` and even ``https://u@example.com``): it
  never helps a legitimate fetch and is the classic look-alike trick.
- The port and the path are ignored: rules match the host only. An invalid port denies.
- Host: percent-escapes deny; lowercased; one trailing dot stripped; non-ASCII hosts go through
  IDNA (UTS #46, as browsers do) so a Cyrillic ``а`` becomes ``xn--...`` and no longer equals the
  ASCII name, while fullwidth ASCII maps to the same host it really is. An IDNA error denies.

Host patterns (``WebFetch(domain:...)``), normalised the same way at parse time:

- ``example.com``: that host exactly (``api.example.com`` is another host).
- ``*.example.com``: any subdomain at any depth, never ``example.com`` itself.
- ``*`` elsewhere matches within one label only: ``example.*`` matches ``example.org``, never
  ``example.evil.com``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from urllib.parse import urlsplit

import idna

__all__ = ["host_matches", "normalise_host", "normalise_host_pattern", "url_host"]

_MAX_URL = 8192
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\Z")
_GLOB_LABEL = re.compile(r"[a-z0-9_*-]+\Z")
_IPV6 = re.compile(r"[0-9a-f:.]+\Z")


def _unsafe(text: str) -> bool:
    return any(
        ch.isspace() or ch == "\\" or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")
        for ch in text
    )


def normalise_host(host: str) -> str | None:
    """Lowercase, strip one trailing dot, IDNA-encode; None when it is not a valid host name."""
    if not host or _unsafe(host) or "%" in host or len(host) > 255:
        return None
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1].lower()
        return f"[{inner}]" if _IPV6.match(inner) else None
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return None
    return host


def normalise_host_pattern(pattern: str) -> str | None:
    """Normalise a ``domain:`` pattern; None when invalid."""
    if not pattern or "*" not in pattern:
        return normalise_host(pattern)
    pattern = pattern.lower()
    if pattern.endswith("."):
        pattern = pattern[:-1]
    out: list[str] = []
    for label in pattern.split("."):
        if "*" in label:
            if not _GLOB_LABEL.match(label):
                return None
            out.append(label)
        else:
            encoded = normalise_host(label)
            if encoded is None or "." in encoded:
                return None
            out.append(encoded)
    return ".".join(out)


def url_host(url: object) -> str | None:
    """The normalised host of an http(s) URL, or None when the URL must be denied."""
    if not isinstance(url, str) or not url or len(url) > _MAX_URL or _unsafe(url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on an invalid port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return None
    netloc = parts.netloc
    if "@" in netloc or not netloc:
        return None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return normalise_host(host)


@functools.lru_cache(maxsize=1024)
def _label_regex(label: str) -> re.Pattern[str]:
    return re.compile("[^.]*".join(re.escape(part) for part in label.split("*")) + r"\Z")


def host_matches(host: str, pattern: str) -> bool:
    """Match a normalised host against a normalised ``domain:`` pattern."""
    if "*" not in pattern:
        return host == pattern
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        suffix = pattern[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    host_labels = host.split(".")
    pattern_labels = pattern.split(".")
    if len(host_labels) != len(pattern_labels):
        return False
    pairs = zip(host_labels, pattern_labels, strict=True)
    return all(_label_regex(p).match(h) is not None for h, p in pairs)
