"""policies.urls: host extraction and host-pattern matching."""

from __future__ import annotations

import pytest

from policies.urls import host_matches, normalise_host_pattern, url_host


@pytest.mark.parametrize(
    ("url", "host"),
    [("https://Example.COM./x", "example.com"), ("http://a.b:80", "a.b"),
     ("https://[::1]:8/", "[::1]"), ("https://u@a.b", None), ("ftp://a.b", None),
     ("https://a b", None), ("https://a.b\\x", None), ("https://a%2eb", None),
     ("https://ex\u0430mple.com", "xn--exmple-4nf.com"), ("https://a..b", None),
     ("https://:80/", None), ("https://a.b:x/", None), (None, None)],
)  # fmt: skip
def test_url_host(url: object, host: str | None) -> None:
    assert url_host(url) == host


@pytest.mark.parametrize(
    ("pattern", "normal"),
    [("*.Example.com.", "*.example.com"), ("bücher.de", "xn--bcher-kva.de"),
     ("a/b", None), ("a b", None), ("", None), ("*.*.x", "*.*.x"), ("a@b", None)],
)  # fmt: skip
def test_normalise_host_pattern(pattern: str, normal: str | None) -> None:
    assert normalise_host_pattern(pattern) == normal


@pytest.mark.parametrize(
    ("host", "pattern", "expected"),
    [("a.b.example.com", "*.example.com", True), ("example.com", "*.example.com", False),
     ("xexample.com", "*.example.com", False), ("example.org", "example.*", True),
     ("example.evil.com", "example.*", False), ("api-eu.x.com", "api-*.x.com", True),
     ("a.x.com", "*.*.com", True), ("x.com", "*.*.com", False)],
)  # fmt: skip
def test_host_matches(host: str, pattern: str, expected: bool) -> None:
    assert host_matches(host, pattern) is expected
