"""Claude Code PreToolUse hook: stdin JSON -> POST /v1/tool-calls/check -> hook answer.

Which skill: with a fixed skill configured (--skill / SKILLWARDEN_SKILL) every call is checked
against it. Without one the hook sends only the event's session_id, and the gateway checks the
call against the skill its proxy last bound on that session (the `Skill` tool call the model
made, else X-Skill, else the no_skill policy, which denies by default).

Fail closed. Claude Code lets a tool call proceed when a hook exits with a code other than
0/2 and prints no valid JSON, or times out, so every path here ends in a well-formed answer:

- allow: no output, exit 0. Claude Code's own permission rules and prompts still apply
  (an explicit "allow" would skip the user's prompt; the gateway only ever narrows).
- deny (the gateway said so, or anything went wrong: bad stdin, no gateway configured,
  unreachable, timeout, non-200, unexpected body): the documented JSON form on stdout,
  exit 0. Its reason reaches the model verbatim and the call is listed in
  `permission_denials`. Only if stdout itself cannot be written do we fall back to exit 2
  with the reason on stderr (exit 2 blocks whether or not JSON was printed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["CHECK_PATH", "HookConfig", "HookResult", "deny_output", "run_hook"]

CHECK_PATH = "/v1/tool-calls/check"
_MAX_STDIN = 16 * 1024 * 1024  # Write/Edit inputs carry whole files; beyond this, deny
_ANCHOR_FIELDS = ("project_dir", "skill_dir", "home")
_SESSION_TOKEN = re.compile(r"[!-~]{1,128}")  # printable ASCII, as the proxy keeps it


@dataclass(frozen=True, slots=True)
class HookConfig:
    """Where to ask and as whom. None means not configured (the hook then denies)."""

    gateway: str | None
    key: str | None
    skill: str | None  # None: follow the session's skill as the gateway's proxy bound it
    timeout: float = 10.0
    project_dir: str | None = None  # Claude Code sets $CLAUDE_PROJECT_DIR for hooks
    skill_dir: str | None = None  # ${CLAUDE_SKILL_DIR} of the skill, when rules use it
    home: str | None = None  # for ~/ rules and paths


@dataclass(frozen=True, slots=True)
class HookResult:
    stdout: str
    exit_code: int = 0


class _Deny(Exception):
    """A reason to deny that is not the gateway's policy decision (a failure)."""


def deny_output(reason: str) -> str:
    """Claude Code's PreToolUse deny JSON (one line)."""
    answer = {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }
    }
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":"))


def run_hook(
    raw_stdin: bytes, config: HookConfig, *, transport: httpx.BaseTransport | None = None
) -> HookResult:
    """Decide one PreToolUse event; never raises."""
    try:
        event = _parse_event(raw_stdin)
        body = _check_body(event, config)
        answer = _ask_gateway(body, config, transport)
        return _result(answer, body)
    except _Deny as refusal:
        reason = f"Skillwarden denied this tool call (fail closed): {refusal}"
    except Exception as exc:  # noqa: BLE001 - a crash must deny, never let the call proceed
        reason = f"Skillwarden denied this tool call: hook error {type(exc).__name__}: {exc}"
    return HookResult(deny_output(reason) + "\n")


def _parse_event(raw: bytes) -> Mapping[str, Any]:
    if len(raw) > _MAX_STDIN:
        raise _Deny(f"hook input larger than {_MAX_STDIN} bytes")
    try:
        event = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Deny(f"hook input on stdin is not JSON ({exc})") from None
    if not isinstance(event, dict):
        raise _Deny("hook input on stdin is not a JSON object")
    name = event.get("hook_event_name", "PreToolUse")
    if name != "PreToolUse":
        raise _Deny(f"this hook handles PreToolUse events, not {str(name)[:80]!r}")
    tool = event.get("tool_name")
    if not isinstance(tool, str) or not tool:
        raise _Deny("hook input has no tool_name")
    return event


def _check_body(event: Mapping[str, Any], config: HookConfig) -> dict[str, Any]:
    if not config.gateway:
        raise _Deny("no gateway URL configured (--gateway or SKILLWARDEN_URL)")
    if not config.key:
        raise _Deny("no gateway API key configured (--key or SKILLWARDEN_API_KEY)")
    body: dict[str, Any] = {"tool": event["tool_name"]}
    if config.skill:  # a fixed skill wins over the session's
        body["skill"] = config.skill
    elif not isinstance(event.get("session_id"), str) or not event["session_id"]:
        raise _Deny(
            "no skill configured (--skill or SKILLWARDEN_SKILL) and the hook input has no "
            "session_id to follow the session's skill"
        )
    if "tool_input" in event:  # absent: the gateway denies a call without input
        body["input"] = event["tool_input"]
    for name in ("cwd", "session_id", "tool_use_id"):  # cwd anchors relative paths
        if isinstance(event.get(name), str):
            body[name] = event[name]
    for name in _ANCHOR_FIELDS:
        value = getattr(config, name)
        if value:
            body[name] = value
    return body


def _ask_gateway(
    body: dict[str, Any], config: HookConfig, transport: httpx.BaseTransport | None
) -> Mapping[str, Any]:
    assert config.gateway is not None and config.key is not None
    url = config.gateway.rstrip("/") + CHECK_PATH
    try:
        with httpx.Client(timeout=config.timeout, transport=transport) as client:
            response = client.post(url, json=body, headers=_headers(body, config.key))
    except httpx.TimeoutException:
        timeout = f"did not answer within {config.timeout}s"
        raise _Deny(f"the gateway at {config.gateway} {timeout}") from None
    except httpx.HTTPError as exc:
        raise _Deny(f"the gateway at {config.gateway} is unreachable ({_one_line(exc)})") from None
    if response.status_code != 200:
        text = f"the gateway answered HTTP {response.status_code}: {_error_text(response)}"
        if "skill" not in body:  # the gateway's message says why the session gave no skill
            text += (
                f" (no --skill set: the check followed session {str(body['session_id'])[:128]!r})"
            )
        raise _Deny(text)
    try:
        answer = response.json()
    except ValueError:
        raise _Deny("the gateway's answer is not JSON") from None
    if not isinstance(answer, dict) or answer.get("decision") not in ("allow", "deny"):
        raise _Deny("the gateway's answer has no allow/deny decision")
    return answer


def _headers(body: Mapping[str, Any], key: str) -> dict[str, str]:
    """The key, and the session id as Claude Code's model requests send it, so that a load
    balancer can route the check to the replica that saw the session (when it is a plain
    token: anything else stays in the body only)."""
    headers = {"x-api-key": key}
    session = body.get("session_id")
    if isinstance(session, str) and _SESSION_TOKEN.fullmatch(session):
        headers["x-claude-code-session-id"] = session
    return headers


def _result(answer: Mapping[str, Any], body: Mapping[str, Any]) -> HookResult:
    if answer["decision"] == "allow":
        return HookResult("")  # no output: Claude Code's normal permission flow continues
    skill = answer.get("skill") or body.get("skill") or "(the session's skill)"
    version = answer.get("skill_version")
    ref = f"{skill}@{version}" if version else str(skill)
    rule = str(answer.get("rule") or "allowed-tools")
    reason = answer.get("reason") or "denied"
    named = rule if rule.startswith(ref) else f"{ref} {rule}"  # "code-review@1 allowed-tools"
    return HookResult(deny_output(f"Skillwarden {named}: {reason}") + "\n")


def _error_text(response: httpx.Response) -> str:
    # The gateway's error body is {"error": {"code", "message"}}; anything else is shown short.
    try:
        error = response.json().get("error", {})
        return f"{error['code']}: {error['message']}"
    except Exception:  # noqa: BLE001 - any odd body is reported, not raised
        return response.text[:200] or "(empty body)"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
