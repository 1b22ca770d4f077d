"""The tool-call check follows the skill the LLM path bound on the same Claude Code session.

A running gateway in front of the scripted Anthropic upstream; model requests go through the
official SDK with Claude Code's session header and a conversation whose latest assistant turn
calls the `Skill` tool; the check API is asked over HTTP, and the hook runs as a subprocess.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import anthropic
import httpx
import pytest

from tests.e2e.proxy_support import (
    AGENT_KEY,
    REVIEW_ONLY_KEY,
    MakeStack,
    Stack,
    make_stack,
    stack,
    upstreams,
)
from tests.e2e.test_hook import STDIN, denied_reason, hook_env, run_hook
from tests.e2e.upstreams import anthropic_message, json_reply

pytestmark = pytest.mark.e2e
__all__ = ["make_stack", "stack", "upstreams"]

CHECK = "/v1/tool-calls/check"
GIT_STATUS = {"tool": "Bash", "input": {"command": "git status"}, "cwd": "/work/proj"}
MKDIR_OUT = {"tool": "Bash", "input": {"command": "mkdir -p out"}, "cwd": "/work/proj"}
TOOLS: Any = [
    {"name": name, "description": name, "input_schema": {"type": "object"}}
    for name in ("Bash", "Read", "Write", "Skill")
]


def conversation(skill: str) -> Any:
    """Claude Code's shape after the model switched skills: Skill call, then its result."""
    call = {"type": "tool_use", "id": "toolu_skill", "name": "Skill", "input": {"skill": skill}}
    return [
        {"role": "user", "content": "please help"},
        {"role": "assistant", "content": [call]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_skill", "content": "ok"}],
        },
    ]


async def llm_request(
    stack: Stack,
    session: str,
    skill: str,
    *,
    key: str = AGENT_KEY,
    tools: Any = TOOLS,
) -> None:
    """One model request of the session whose conversation invoked `skill` (no X-Skill)."""
    stack.ant.enqueue(json_reply(anthropic_message("Working on it.")))
    client = anthropic.AsyncAnthropic(
        base_url=stack.url,
        api_key=key,
        default_headers={"X-Claude-Code-Session-Id": session},
        max_retries=0,
    )
    async with client:
        await client.messages.create(
            model="claude-opus-4-8",
            max_tokens=64,
            messages=conversation(skill),
            tools=tools,
        )


async def check(
    stack: Stack, body: dict[str, Any], *, key: str = AGENT_KEY, **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url, timeout=20) as client:
        return await client.post(CHECK, json=body, headers={"x-api-key": key, **headers})


def decided(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def new_session() -> str:
    return str(uuid.uuid4())


async def test_check_follows_the_sessions_skill(stack: Stack) -> None:
    session = new_session()
    await llm_request(stack, session, "code-review")
    allowed = decided(await check(stack, {**GIT_STATUS, "session_id": session}))
    assert allowed["decision"] == "allow" and allowed["skill"] == "code-review"
    assert allowed["bound_by"] == "session"
    denied = decided(await check(stack, {**MKDIR_OUT, "session_id": session}))
    assert denied["decision"] == "deny" and denied["rule"].startswith("code-review@")

    await llm_request(stack, session, "pdf-processing")  # the model switched skills
    now = decided(await check(stack, {**GIT_STATUS, "session_id": session}))
    assert now["decision"] == "deny" and now["skill"] == "pdf-processing"
    mkdir = decided(await check(stack, {**MKDIR_OUT, "session_id": session}))
    assert mkdir["decision"] == "allow" and mkdir["bound_by"] == "session"

    records = [r for r in await stack.records(6) if r.kind == "tool_check"]
    assert [r.bound_by for r in records] == ["session"] * 4
    assert [r.skill for r in records] == ["code-review"] * 2 + ["pdf-processing"] * 2
    assert {r.session_id for r in records} == {session}


async def test_body_skill_and_x_skill_win_over_the_session(stack: Stack) -> None:
    session = new_session()
    await llm_request(stack, session, "pdf-processing")
    by_body = decided(await check(stack, {**GIT_STATUS, "session_id": session,
                                          "skill": "code-review"}))  # fmt: skip
    assert by_body["decision"] == "allow" and by_body["skill"] == "code-review"
    assert by_body["bound_by"] == "check_body"
    by_header = decided(
        await check(stack, {**GIT_STATUS, "session_id": session}, **{"X-Skill": "code-review"})
    )
    assert by_header["skill"] == "code-review" and by_header["bound_by"] == "header"


async def test_another_consumer_does_not_get_the_session(stack: Stack) -> None:
    session = new_session()
    await llm_request(stack, session, "code-review")  # consumer e2e-agent
    other = await check(stack, {**GIT_STATUS, "session_id": session}, key=REVIEW_ONLY_KEY)
    assert other.status_code == 403, other.text
    error = other.json()["error"]
    assert error["code"] == "unknown_skill" and session in error["message"]


async def test_unknown_session_falls_back_to_no_skill(make_stack: MakeStack) -> None:
    denying = make_stack()
    refused = await check(denying, {**GIT_STATUS, "session_id": "never-seen"})
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "unknown_skill" and "'never-seen'" in error["message"]
    (record,) = await denying.records(1)
    assert record.kind == "tool_check" and record.decision == "deny"


async def test_unknown_session_uses_the_no_skill_baseline(make_stack: MakeStack) -> None:
    baseline = make_stack(skills={"*": {"no_skill": "code-review"}})
    answer = decided(await check(baseline, {**MKDIR_OUT, "session_id": "never-seen"}))
    assert answer["skill"] == "code-review" and answer["bound_by"] == "no_skill_baseline"
    assert answer["decision"] == "deny"


async def test_refused_binding_forgets_the_session(stack: Stack) -> None:
    # reviewer may use code-review only: its pdf-processing request is refused, and the check
    # must not keep using the session's earlier skill.
    session = new_session()
    await llm_request(stack, session, "code-review", key=REVIEW_ONLY_KEY)
    ok = decided(await check(stack, {**GIT_STATUS, "session_id": session}, key=REVIEW_ONLY_KEY))
    assert ok["decision"] == "allow"
    with pytest.raises(anthropic.PermissionDeniedError):
        await llm_request(stack, session, "pdf-processing", key=REVIEW_ONLY_KEY)
    gone = await check(stack, {**GIT_STATUS, "session_id": session}, key=REVIEW_ONLY_KEY)
    assert gone.status_code == 403 and gone.json()["error"]["code"] == "unknown_skill"


async def test_requests_without_tools_do_not_change_the_binding(stack: Stack) -> None:
    # Claude Code's session-title and WebFetch side requests offer no tools.
    session = new_session()
    await llm_request(stack, session, "code-review")
    await llm_request(stack, session, "pdf-processing", tools=[])
    answer = decided(await check(stack, {**GIT_STATUS, "session_id": session}))
    assert answer["skill"] == "code-review" and answer["decision"] == "allow"


async def test_entitlement_is_checked_again_at_check_time(stack: Stack) -> None:
    # A session known for one consumer never widens what the key may use: the reviewer's key
    # binding pdf-processing through the session is impossible, tested via a pin in X-Skill.
    session = new_session()
    await llm_request(stack, session, "code-review", key=REVIEW_ONLY_KEY)
    pinned = await check(
        stack, {**GIT_STATUS, "session_id": session}, key=REVIEW_ONLY_KEY,
        **{"X-Skill": "pdf-processing"},
    )  # fmt: skip
    assert pinned.status_code == 403 and pinned.json()["error"]["code"] == "skill_not_permitted"


def hook_event(session: str) -> bytes:
    event = json.loads((STDIN / "bash_exit2.json").read_bytes())  # Bash `git status`
    return json.dumps({**event, "session_id": session}).encode()


async def test_hook_without_a_fixed_skill_follows_the_session(stack: Stack) -> None:
    session = new_session()
    env = hook_env(SKILLWARDEN_URL=stack.url, SKILLWARDEN_API_KEY=AGENT_KEY)
    unknown = denied_reason(run_hook(hook_event(session), env))
    assert "HTTP 403: unknown_skill" in unknown and session in unknown
    assert "fail closed" in unknown

    await llm_request(stack, session, "code-review")
    allowed = run_hook(hook_event(session), env)
    assert (allowed.returncode, allowed.stdout) == (0, b""), allowed.stderr

    await llm_request(stack, session, "pdf-processing")
    reason = denied_reason(run_hook(hook_event(session), env))
    assert reason.startswith("Skillwarden pdf-processing@"), reason

    fixed = hook_env(
        SKILLWARDEN_URL=stack.url, SKILLWARDEN_API_KEY=AGENT_KEY, SKILLWARDEN_SKILL="code-review"
    )
    still = run_hook(hook_event(session), fixed)  # a fixed skill wins over the session's
    assert (still.returncode, still.stdout) == (0, b""), still.stderr
