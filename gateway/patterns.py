"""Operator regular expressions (`guard.allow`/`guard.deny`, `audit.redact`), compiled with RE2.

These patterns run on attacker-controlled text, on the event loop. Python's `re` backtracks:
`(a+)+$`, or an e-mail regex on a long run of word characters, takes exponential or quadratic
time on one crafted prompt and stalls every request. RE2 (as Envoy uses for operator regexes)
searches in time linear in the text, whatever the pattern. The price is its syntax: no
lookaround, no backreferences, a few flags and escapes spelled differently, and `\\w \\d \\s \\b`
are ASCII. A pattern RE2 cannot run is a configuration problem with a reason; there is no
fallback to `re` (google-re2 raises `re2.error`, it never falls back).

Matching works on UTF-8 bytes: text is encoded once per check, and spans are byte offsets, so
nothing maps offsets back to characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import re2

__all__ = ["LinearPattern", "PatternError", "compile_pattern", "encode", "replace_all"]

_WHY = "(patterns run on RE2, linear time)"


class PatternError(ValueError):
    """A pattern RE2 cannot compile; str() is the reason, fit for a config problem."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # the reason is reported as a config problem, not on stderr
    options.never_capture = True  # only whole-match spans are used: groups cost time
    return options


_OPTIONS = _options()


class LinearPattern:
    """One compiled pattern. `search` and `spans` take UTF-8 bytes (see `encode`)."""

    __slots__ = ("_regex", "pattern")

    def __init__(self, pattern: str, regex: Any) -> None:
        self.pattern = pattern
        self._regex = regex

    def search(self, data: bytes) -> bool:
        """Does the pattern match anywhere in `data` (like `re.search`)?"""
        return self._regex.search(data) is not None

    def spans(self, data: bytes) -> Iterator[tuple[int, int]]:
        """Byte spans of every non-overlapping match, left to right (like `re.finditer`)."""
        for match in self._regex.finditer(data):
            start, end = match.span()
            # After an empty match the search moves on one byte, which may be inside a
            # multi-byte character: an empty match there is not between two characters.
            if start == end and start < len(data) and data[start] & 0xC0 == 0x80:
                continue
            yield start, end


def encode(text: str) -> bytes:
    # surrogatepass: a lone surrogate (not valid UTF-8) must not make a check raise.
    return text.encode("utf-8", "surrogatepass")


def replace_all(patterns: Sequence[LinearPattern], text: str, marker: str) -> str:
    """`text` with every match of each pattern, applied in turn, replaced by `marker`.

    Each search is linear; the searches resume after each match, so a pattern that scans far
    past its matches (`x[^y]*y|x` on a run of x) is still slow over many matches."""
    if not patterns:
        return text
    data, mark = encode(text), encode(marker)
    for pattern in patterns:
        pieces: list[bytes] = []
        last = 0
        for start, end in pattern.spans(data):
            pieces += (data[last:start], mark)
            last = end
        if pieces:
            pieces.append(data[last:])
            data = b"".join(pieces)
    return data.decode("utf-8", "surrogatepass")


def compile_pattern(pattern: str) -> LinearPattern:
    """The pattern compiled with RE2; PatternError saying why when RE2 cannot run it."""
    reason = _refused(pattern)
    if reason is not None:
        raise PatternError(f"{reason} {_WHY}")
    try:
        regex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise PatternError(_explain(_message(exc), pattern)) from None
    return LinearPattern(pattern, regex)


# An escape `\x`: the backslash is not itself escaped (an even run of backslashes before it).
_BYTE_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\C")
_WORD_BOUNDARY = re.compile(r"(?<!\\)(?:\\\\)*\\[bB]")


def _refused(pattern: str) -> str | None:
    """Patterns RE2 compiles but would run differently from what the operator means."""
    if _BYTE_ESCAPE.search(pattern):
        return "\\C (any byte) is not supported"
    letter = next((c for c in pattern if not c.isascii() and c.isalpha()), None)
    if letter is not None and _WORD_BOUNDARY.search(pattern):
        # Fails open for a deny list: `\bпароль\b` would never match.
        return (
            f"\\b is an ASCII word boundary: {letter!r} is not a word character to it, so it "
            f"will not match where meant; drop it or spell it out, e.g. (?:^|\\P{{L}})"
        )
    return None


def _message(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


_OPERATORS = {
    "(?=": "lookahead is not supported",
    "(?!": "lookahead is not supported",
    "(?<=": "lookbehind is not supported",
    "(?<!": "lookbehind is not supported",
    "(?P=": "backreferences are not supported",
    "(?>": "atomic groups are not supported",
    "(?#": "comments (?#...) are not supported",
    "(?|": "branch reset groups are not supported",
}
_ESCAPES = {
    "Z": "\\Z is not supported: use \\z",
    "u": "\\u escapes are not supported: use \\x{...}",
    "U": "\\U escapes are not supported: use \\x{...}",
    "N": "\\N escapes are not supported: use \\x{...}",
}


def _explain(error: str, pattern: str) -> str:
    """RE2's error ('invalid perl operator: (?=') as a reason an operator can act on."""
    kind, _, fragment = error.partition(": ")
    reason: str | None = None
    if kind == "invalid perl operator":
        if fragment == "(?P" and "(?P=" in pattern:  # RE2 quotes only the first three
            fragment = "(?P="
        reason = next((r for op, r in _OPERATORS.items() if fragment.startswith(op)), None)
        if reason is None and fragment.startswith("(?") and fragment != "(?P":
            reason = f"flag {fragment[2:]!r} is not supported (RE2 flags: i, m, s, U)"
    elif kind == "invalid escape sequence" and len(fragment) >= 2:
        letter = fragment[1]
        if letter.isdigit():
            reason = "backreferences are not supported"
        else:
            reason = _ESCAPES.get(letter, f"escape {fragment} is not supported")
    elif kind == "bad repetition operator" and fragment.endswith("+"):
        reason = "possessive quantifiers are not supported"
    elif kind == "invalid repetition size":
        reason = "repetition counts above 1000 are not supported"
    elif kind.startswith("pattern too large"):
        reason = "pattern too large for RE2's memory limit: split it or shorten repetitions"
    if reason is None:
        return f"invalid regular expression: {error}"
    return f"{reason} {_WHY}"
