"""`skillwarden hook claude-code` as a real subprocess, fed Claude Code's captured stdin samples."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from tests.e2e.conftest import create_key, embedded_settings, running
from tests.e2e.test_check_api import wait_for_records

pytestmark = pytest.mark.e2e

STDIN = Path(__file__).resolve().parents[1] / "cases" / "claude_code" / "pretooluse_stdin"
SAMPLES = sorted(STDIN.glob("*.json"))
BIN = Path(sys.executable).parent
# Under the code-review sample skill: `git status` is allowed, Write is not.
CODE_REVIEW = {"bash_exit2.json": "allow", "bash_json_deny.json": "allow",
               "write_exit2_acceptEdits.json": "deny"}  # fmt: skip


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    settings = embedded_settings(tmp_path_factory.mktemp("hook") / "data")
    agent = create_key(settings, "agent", "hook-user")
    with running(create_app(settings, say=lambda _text: None)) as url:
        yield {"url": url, "agent": agent, "settings": settings}


def hook_env(**values: str) -> dict[str, str]:
    """The test's environment without any SKILLWARDEN_/CLAUDE_ variable, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKILLWARDEN_", "CLAUDE_"))}
    return {**env, "HOME": "/home/probe", **values}


def run_hook(
    stdin: bytes, env: dict[str, str], *args: str, module: bool = False
) -> subprocess.CompletedProcess[bytes]:
    command = (
        [sys.executable, "-m", "gateway.cli_hook", "claude-code", *args]
        if module
        else [str(BIN / "skillwarden"), "hook", "claude-code", *args]
    )
    return subprocess.run(
        command, input=stdin, env=env, capture_output=True, timeout=60, check=False
    )


def denied_reason(done: subprocess.CompletedProcess[bytes]) -> str:
    """Exactly Claude Code's PreToolUse deny JSON on stdout, exit 0."""
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": answer["hookSpecificOutput"]["permissionDecisionReason"],
        }
    }
    reason: str = answer["hookSpecificOutput"]["permissionDecisionReason"]
    return reason


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_captured_samples_under_code_review(gw: dict[str, Any], sample: Path) -> None:
    env = hook_env(
        SKILLWARDEN_URL=gw["url"], SKILLWARDEN_API_KEY=gw["agent"], SKILLWARDEN_SKILL="code-review"
    )
    done = run_hook(sample.read_bytes(), env)
    if CODE_REVIEW[sample.name] == "allow":
        assert (done.returncode, done.stdout) == (0, b""), done.stderr  # Claude Code's own flow
    else:
        reason = denied_reason(done)
        assert reason.startswith("Skillwarden code-review@") and "allowed-tools" in reason
        assert "Write" in reason


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_captured_samples_denied_by_another_skill(gw: dict[str, Any], sample: Path) -> None:
    # pdf-processing allows no git command and writes only under ./out/.
    env = hook_env(SKILLWARDEN_API_KEY=gw["agent"])
    done = run_hook(sample.read_bytes(), env, "--gateway", gw["url"], "--skill", "pdf-processing")
    reason = denied_reason(done)
    assert reason.startswith("Skillwarden pdf-processing@"), reason


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_no_gateway_denies_and_says_unreachable(sample: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    env = hook_env(SKILLWARDEN_URL=url, SKILLWARDEN_API_KEY="sk-sw-x", SKILLWARDEN_SKILL="x")
    reason = denied_reason(run_hook(sample.read_bytes(), env, "--timeout", "5"))
    assert "unreachable" in reason and url in reason and "fail closed" in reason


def test_gateway_refusals_deny_with_the_code(gw: dict[str, Any]) -> None:
    sample = (STDIN / "bash_exit2.json").read_bytes()
    env = hook_env(SKILLWARDEN_URL=gw["url"], SKILLWARDEN_API_KEY=gw["agent"])
    reason = denied_reason(run_hook(sample, env, "--skill", "no-such-skill"))
    assert "HTTP 403: unknown_skill" in reason
    bad_key = hook_env(SKILLWARDEN_URL=gw["url"], SKILLWARDEN_API_KEY="sk-sw-wrong")
    reason = denied_reason(run_hook(sample, bad_key, "--skill", "code-review"))
    assert "HTTP 401: unauthenticated" in reason


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [(b"", "not JSON"), (b"not json", "not JSON"), (b"[]", "not a JSON object")],
)
def test_malformed_stdin_denies(gw: dict[str, Any], stdin: bytes, needle: str) -> None:
    env = hook_env(
        SKILLWARDEN_URL=gw["url"], SKILLWARDEN_API_KEY=gw["agent"], SKILLWARDEN_SKILL="code-review"
    )
    assert needle in denied_reason(run_hook(stdin, env))


def test_unconfigured_hook_denies() -> None:
    reason = denied_reason(run_hook((STDIN / "bash_exit2.json").read_bytes(), hook_env()))
    assert "no gateway URL configured" in reason


def test_module_entry_point_and_audit_join(gw: dict[str, Any]) -> None:
    event = json.loads((STDIN / "write_exit2_acceptEdits.json").read_bytes())
    event["session_id"] = "module-entry-point"  # other tests replay the same captured session
    stdin = json.dumps(event).encode()
    env = hook_env(
        SKILLWARDEN_URL=gw["url"], SKILLWARDEN_API_KEY=gw["agent"], SKILLWARDEN_SKILL="code-review"
    )
    assert "Write" in denied_reason(run_hook(stdin, env, module=True))
    (record,) = wait_for_records(gw["settings"], event["session_id"], 1)
    assert record.kind == "tool_check" and record.consumer == "hook-user"
    assert record.decision == "deny" and record.skill == "code-review"
    assert record.tool_calls[0]["tool_use_id"] == event["tool_use_id"]


def test_or_exit_2_blocks_when_the_command_is_missing(tmp_path: Path) -> None:
    # The documented settings.json form: anything that escapes the hook becomes exit 2.
    command = f"{tmp_path}/no-such-skillwarden hook claude-code || exit 2"
    done = subprocess.run(["bash", "-c", command], input=b"{}", capture_output=True, check=False)
    assert done.returncode == 2
