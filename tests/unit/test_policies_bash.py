"""policies.bash: the splitter's output shape and the Bash pattern grammar."""

from __future__ import annotations

import pytest

from policies.bash import MAX_COMMANDS, BashSplit, pattern_matches, split_command


@pytest.mark.parametrize(
    ("command", "commands", "writes"),
    [
        ("git log | grep x; ls & echo\nfoo", ("git log", "grep x", "ls", "echo", "foo"), ()),
        ('git commit -m "a && b"', ('git commit -m "a && b"',), ()),
        ("git  status   -s", ("git status -s",), ()),
        ("ls > a b", ("ls b",), ("a",)),
        ("echo >&2 hi", ("echo hi",), ()),
        ("cat <<EOF > out\nx\nEOF", ("cat",), ("out",)),
        ("echo x >/dev/null 2>&1", ("echo x",), ()),
        ("{ ls; } > 'f g'", ("ls",), ("f g",)),
        ("git a \\\n b", ("git a b",), ()),
    ],
)
def test_split(command: str, commands: tuple[str, ...], writes: tuple[str, ...]) -> None:
    assert split_command(command) == BashSplit(commands, writes)


@pytest.mark.parametrize(
    "command",
    ["x=1", "f() { ls; }", "ls $(id)", "git status &&", "echo 'x", "\"git\" x", "$X y",
     "echo ${x@P}", "echo $((1))", "((x++))", "echo > ~/x", "echo > $f", "{ ls; } > f x",
     "; ;" * MAX_COMMANDS, "true;" * (MAX_COMMANDS + 1), "a" * 10_001, "", None, 3],
)  # fmt: skip
def test_split_denies(command: object) -> None:
    result = split_command(command)
    assert result.error and not result.commands


@pytest.mark.parametrize(
    ("command", "pattern", "expected"),
    [
        ("git status", "git *", True),
        ("git", "git *", True),
        ("gitk", "git *", False),
        ("lsof", "ls*", True),
        ("git push origin main", "git * main", True),
        ("git push", "git:* push", False),
        ("npm run build", "npm run build", True),
        ("npm run build --watch", "npm run build", False),
        ("a.b", "a?b", False),
        ("echo (x)", "echo (*)", True),
        ("git  status", "git status", False),
        ("git status", "git  status", True),
    ],
)
def test_pattern_matches(command: str, pattern: str, expected: bool) -> None:
    assert pattern_matches(command, pattern) is expected
