"""Operator patterns run on RE2: catastrophic-backtracking patterns stay fast on adversarial
text (guard and redaction), unsupported syntax is refused at compile, matching and
replacement keep their meaning on Unicode text.

The timing tests use only the guard's and the recorder's entry points, so they fail (the
wall-clock bound, or pytest-timeout) when a backtracking engine runs the patterns."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import re2

from gateway.errors import GatewayError
from gateway.patterns import PatternError, compile_pattern, encode, replace_all
from gateway.pipeline.bodies import REDACTED, BodyRecorder
from gateway.pipeline.context import RequestContext
from gateway.pipeline.guard import guard_prompt
from gateway.pipeline.wire import ANTHROPIC
from gateway.runtime import CompiledGuard
from gateway.settings import GuardSettings

# `re` checks for signals while it backtracks, so pytest-timeout stops a regression here.
pytestmark = pytest.mark.timeout(20)

EMAIL = r"[\w.+-]+@[\w-]+\.[a-z]{2,}"  # unanchored: quadratic on a run of word characters
# (pattern, adversarial text): each takes Python's re seconds to forever.
CATASTROPHIC = [
    (r"(a+)+$", "a" * 100_000 + "!"),
    (r"(x+x+)+y", "x" * 1_000_000),
    (EMAIL, "a" * 256 * 1024),
    (r"^(\w+\s?)*$", "word " * 100_000 + "!"),
]
IDS = ["nested-plus", "overlapping-plus", "email-on-word-run", "word-groups"]


@contextmanager
def under_a_second() -> Iterator[None]:
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"took {elapsed:.2f} s"


class _Rt:
    def __init__(self, guard: GuardSettings) -> None:
        self.guard = CompiledGuard.compile(guard)


def _guard(guard: GuardSettings, prompt: str) -> None:
    body: Any = {"messages": [{"role": "user", "content": prompt}]}
    ctx = RequestContext("r", "/v1/messages", "anthropic", {}, b"{}", wire=ANTHROPIC)
    ctx.body, ctx.skill = body, "s"
    guard_prompt(ctx, _Rt(guard))  # type: ignore[arg-type]


# -- linear time ----------------------------------------------------------------------------
@pytest.mark.parametrize(("pattern", "text"), CATASTROPHIC, ids=IDS)
def test_catastrophic_deny_pattern_is_fast(pattern: str, text: str) -> None:
    with under_a_second():
        _guard(GuardSettings(deny=[pattern]), text)  # no match: allowed
    with under_a_second(), pytest.raises(GatewayError, match="none of the allow"):
        _guard(GuardSettings(allow=[pattern]), text)


@pytest.mark.parametrize(("pattern", "text"), CATASTROPHIC, ids=IDS)
def test_catastrophic_redact_pattern_is_fast(pattern: str, text: str) -> None:
    recorder = BodyRecorder([pattern])
    with under_a_second():
        stored = recorder.capture(text.encode())
    assert stored.text == text[: len(stored.text)]  # nothing matched, nothing replaced


def test_many_matches_in_a_large_body_are_replaced_fast() -> None:
    text = "mail a.b@c.io, " * 30_000  # 450 KB, 30,000 matches of an unanchored pattern
    with under_a_second():
        redacted = BodyRecorder([EMAIL]).redact(text)
    assert redacted == f"mail {REDACTED}, " * 30_000


def test_a_deny_pattern_still_blocks_a_huge_prompt() -> None:
    with under_a_second(), pytest.raises(GatewayError, match="deny pattern") as err:
        _guard(
            GuardSettings(deny=[r"(a+)+$", r"(?i)ignore previous"]), "a" * 10**6 + "Ignore previous"
        )
    assert err.value.rule == r"guard.deny: (?i)ignore previous"


# -- refused syntax, never a fallback to re -----------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"secret(?=\d)", "lookahead is not supported"),
        (r"(?!x)secret", "lookahead is not supported"),
        (r"(?<=key=)\w+", "lookbehind is not supported"),
        (r"(?<!x)y", "lookbehind is not supported"),
        (r"(\w)\1", "backreferences are not supported"),
        (r"(?P<q>['\"]).*(?P=q)", "backreferences are not supported"),
        (r"(?>a+)b", "atomic groups are not supported"),
        (r"a++b", "possessive quantifiers are not supported"),
        (r"end\Z", r"\Z is not supported: use \z"),
        (r"(?x) a b", "flag 'x' is not supported"),
        (r"caf\u00e9", r"use \x{...}"),
        (r"a{1001}", "repetition counts above 1000"),
        (r"\C", "any byte"),
        (r"(?i)\bпароль\b", "ASCII word boundary"),
    ],
)
def test_unsupported_syntax_is_refused_with_a_reason(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError) as err:
        compile_pattern(pattern)
    assert reason in str(err.value)
    assert str(err.value).endswith("(patterns run on RE2, linear time)")


def test_a_syntax_error_is_an_invalid_regular_expression() -> None:
    with pytest.raises(PatternError, match=r"^invalid regular expression: missing \)"):
        compile_pattern("(unclosed")


def test_the_re2_module_raises_instead_of_falling_back() -> None:
    # Other packages install a module named re2 that silently runs `re` on what RE2 cannot.
    with pytest.raises(re2.error):
        re2.compile(r"(a)\1")
    assert not isinstance(re2.compile("a"), re.Pattern)


@pytest.mark.parametrize("pattern", [r"\\b\w+", r"\\C", r"(?i)\bpassword\b", r"\pL+"])
def test_lookalikes_of_refused_syntax_compile(pattern: str) -> None:
    compile_pattern(pattern)


# -- the same meaning as before -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        ("lat.st", "the latest ask", True),  # anywhere, not anchored
        ("^review", "please review", False),
        ("^review", "review this", True),
        ("(?i)PASSWORD", "my password", True),
        ("(?i)пароль", "мой ПАРОЛЬ", True),  # Unicode case folding
        ("日本", "これは日本語", True),
        (r"(?m)^rm -rf", "ok\nrm -rf /", True),
        (r"(?s)a.b", "a\nb", True),
        ("a.b", "a\nb", False),
    ],
)
def test_search_finds_a_match_anywhere(pattern: str, text: str, found: bool) -> None:
    assert compile_pattern(pattern).search(encode(text)) is found
    assert (re.search(pattern, text) is not None) is found  # what `re` said


@pytest.mark.parametrize(
    ("patterns", "text", "expected"),
    [
        ([r"sk-\w+"], "key sk-ab1 and sk-cd2.", "key # and #."),
        (["é+"], "aééb日é", "a#b日#"),  # offsets across multi-byte characters
        (["(?i)straße"], "STRASSE Straße STRAßE", "STRASSE # #"),
        ([r"\d+", r"#b"], "a1b22", "a##"),  # in turn: the second sees the first's markers
        (["x*"], "aé日", "#a#é#日#"),  # empty matches only between characters, as in re
    ],
)
def test_replace_all(patterns: list[str], text: str, expected: str) -> None:
    assert replace_all([compile_pattern(p) for p in patterns], text, "#") == expected


def test_replace_all_matches_re_sub_on_mixed_text() -> None:
    text = "Grüße an bob@example.com — ключ sk-live-ABC123def, 日本 alice@x.org!" * 50
    patterns = [r"\b[\w.+-]+@[\w-]+\.[a-z]{2,}", r"sk-live-[A-Za-z0-9]+"]
    expected: str = text
    for p in patterns:
        expected = re.sub(p, REDACTED, expected)
    assert replace_all([compile_pattern(p) for p in patterns], text, REDACTED) == expected


def test_a_lone_surrogate_does_not_make_a_check_raise() -> None:
    secret = compile_pattern("secret")
    assert secret.search(encode("\ud800 secret")) and not secret.search(encode("\ud800"))
    assert replace_all([secret], "\ud800 secret", "#") == "\ud800 #"
