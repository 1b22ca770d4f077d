"""gateway.hook: every path ends in Claude Code's deny JSON or in silence (allow), never a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.hook import CHECK_PATH, HookConfig, HookResult, deny_output, run_hook

STDIN = Path(__file__).resolve().parents[1] / "cases" / "claude_code" / "pretooluse_stdin"
BASH = (STDIN / "bash_exit2.json").read_bytes()
CONFIG = HookConfig("http://gw.test", "sk-sw-test", "code-review", timeout=2.0)


def transport(
    status: int = 200, body: Any = None, seen: list[httpx.Request] | None = None
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handle)


def raising(exc: Exception) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handle)


def reason_of(result: HookResult) -> str:
    assert result.exit_code == 0
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 1
    answer = json.loads(result.stdout)
    assert list(answer) == ["hookSpecificOutput"]
    out = answer["hookSpecificOutput"]
    assert list(out) == ["hookEventName", "permissionDecision", "permissionDecisionReason"]
    assert out["hookEventName"] == "PreToolUse" and out["permissionDecision"] == "deny"
    reason: str = out["permissionDecisionReason"]
    return reason


def test_deny_output_is_claude_codes_shape() -> None:
    assert json.loads(deny_output("why")) == {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": "why",
        }
    }


def test_allow_prints_nothing_and_sends_the_check_body() -> None:
    seen: list[httpx.Request] = []
    answer = {"decision": "allow", "rule": "Bash(git status)", "reason": "ok"}
    config = HookConfig("http://gw.test/", "sk-sw-test", "code-review", 2.0, "/p", "/s", "/h")
    result = run_hook(BASH, config, transport=transport(body=answer, seen=seen))
    assert result == HookResult("", 0)
    (request,) = seen
    assert request.url == "http://gw.test" + CHECK_PATH
    assert request.headers["x-api-key"] == "sk-sw-test"
    assert json.loads(request.content) == {
        "skill": "code-review",
        "tool": "Bash",
        "input": {"command": "git status", "description": "Show working tree status"},
        "cwd": "/home/probe/repo",
        "session_id": "a3f0ec7b-79b7-4bdd-99b6-5321eb3da4b8",
        "tool_use_id": "toolu_017e4d89e7649c4442940989d6",
        "project_dir": "/p",
        "skill_dir": "/s",
        "home": "/h",
    }


def test_gateway_deny_names_skill_rule_and_reason() -> None:
    answer = {
        "decision": "deny",
        "rule": None,
        "reason": "tool 'Write' is not in the skill's allowed-tools",
        "skill": "code-review",
        "skill_version": "1.0.0",
    }
    result = run_hook(BASH, CONFIG, transport=transport(body=answer))
    assert reason_of(result) == (
        "Skillwarden code-review@1.0.0 allowed-tools: tool 'Write' is not in the skill's "
        "allowed-tools"
    )


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: raising(httpx.ConnectError("refused")), "unreachable (refused)"),
        (lambda: raising(httpx.ReadTimeout("slow")), "did not answer within 2.0s"),
        (lambda: raising(RuntimeError("boom")), "hook error RuntimeError: boom"),
        (
            lambda: transport(403, {"error": {"code": "unknown_skill", "message": "no skill x"}}),
            "HTTP 403: unknown_skill: no skill x",
        ),
        (lambda: transport(500, b"<html>oops</html>"), "HTTP 500: <html>oops</html>"),
        (lambda: transport(200, b"not json"), "answer is not JSON"),
        (lambda: transport(200, {"decision": "maybe"}), "no allow/deny decision"),
        (lambda: transport(200, ["allow"]), "no allow/deny decision"),
    ],
)
def test_gateway_failures_deny(make: Callable[[], httpx.MockTransport], expected: str) -> None:
    reason = reason_of(run_hook(BASH, CONFIG, transport=make()))
    assert expected in reason
    assert reason.startswith("Skillwarden denied this tool call")


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"hook_event_name": "PostToolUse", "tool_name": "Bash"}', "handles PreToolUse"),
        (b'{"hook_event_name": "PreToolUse", "tool_input": {}}', "no tool_name"),
        (b'{"tool_name": 7}', "no tool_name"),
    ],
)
def test_malformed_stdin_denies_without_asking(stdin: bytes, expected: str) -> None:
    seen: list[httpx.Request] = []
    reason = reason_of(run_hook(stdin, CONFIG, transport=transport(body={}, seen=seen)))
    assert expected in reason
    assert seen == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (HookConfig(None, "k", "s"), "no gateway URL configured"),
        (HookConfig("http://gw.test", None, "s"), "no gateway API key configured"),
    ],
)
def test_missing_configuration_denies(config: HookConfig, expected: str) -> None:
    reason = reason_of(run_hook(BASH, config, transport=transport(body={"decision": "allow"})))
    assert expected in reason


def test_without_a_skill_the_check_follows_the_session() -> None:
    seen: list[httpx.Request] = []
    config = HookConfig("http://gw.test", "sk-sw-test", None)
    result = run_hook(BASH, config, transport=transport(body={"decision": "allow"}, seen=seen))
    assert result == HookResult("")
    sent = json.loads(seen[0].content)
    assert "skill" not in sent
    assert sent["session_id"] == json.loads(BASH)["session_id"]
    # In a header too, for a load balancer that routes a session to one replica.
    assert seen[0].headers["x-claude-code-session-id"] == sent["session_id"]


def test_an_odd_session_id_stays_in_the_body() -> None:
    seen: list[httpx.Request] = []
    stdin = json.dumps({**json.loads(BASH), "session_id": "a b\u00e9"}).encode()
    run_hook(stdin, CONFIG, transport=transport(body={"decision": "allow"}, seen=seen))
    assert json.loads(seen[0].content)["session_id"] == "a b\u00e9"
    assert "x-claude-code-session-id" not in seen[0].headers


def test_without_a_skill_the_deny_names_the_session_skill() -> None:
    answer = {"decision": "deny", "rule": "code-review@2 allowed-tools", "reason": "no Write",
              "skill": "code-review", "skill_version": "2", "bound_by": "session"}  # fmt: skip
    config = HookConfig("http://gw.test", "sk-sw-test", None)
    reason = reason_of(run_hook(BASH, config, transport=transport(body=answer)))
    assert reason == "Skillwarden code-review@2 allowed-tools: no Write"


def test_without_a_skill_a_refusal_names_the_session() -> None:
    error = {"error": {"code": "unknown_skill", "message": "no skill is active"}}
    config = HookConfig("http://gw.test", "sk-sw-test", None)
    reason = reason_of(run_hook(BASH, config, transport=transport(403, error)))
    assert "HTTP 403: unknown_skill: no skill is active" in reason
    assert "fail closed" in reason and json.loads(BASH)["session_id"] in reason


@pytest.mark.parametrize("session", [None, "", 7])
def test_without_a_skill_or_a_session_denies_without_asking(session: object) -> None:
    seen: list[httpx.Request] = []
    event = {**json.loads(BASH), "session_id": session}
    config = HookConfig("http://gw.test", "sk-sw-test", None)
    stdin = json.dumps(event).encode()
    reason = reason_of(run_hook(stdin, config, transport=transport(body={}, seen=seen)))
    assert "no skill configured" in reason and "no session_id" in reason
    assert seen == []


def test_missing_tool_input_is_sent_without_input() -> None:
    seen: list[httpx.Request] = []
    stdin = b'{"hook_event_name": "PreToolUse", "tool_name": "Read"}'
    run_hook(stdin, CONFIG, transport=transport(body={"decision": "deny"}, seen=seen))
    assert "input" not in json.loads(seen[0].content)


def test_unicode_reason_survives() -> None:
    answer = {"decision": "deny", "rule": "Read(./src/**)", "reason": "chemin « interdit »"}
    reason = reason_of(run_hook(BASH, CONFIG, transport=transport(body=answer)))
    assert reason.endswith("Read(./src/**): chemin « interdit »")


def test_rule_naming_the_skill_is_not_repeated() -> None:
    answer = {
        "decision": "deny",
        "rule": "code-review@1.0.0 allowed-tools",
        "reason": "no Bash rule allows 'git push'",
        "skill": "code-review",
        "skill_version": "1.0.0",
    }
    reason = reason_of(run_hook(BASH, CONFIG, transport=transport(body=answer)))
    assert reason == "Skillwarden code-review@1.0.0 allowed-tools: no Bash rule allows 'git push'"
