"""The gateway with the built-in demo provider, driven by the official SDKs (stream and not),
and `skillwarden demo` run as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from gateway.settings import Settings
from tests.e2e.conftest import StartGateway, embedded_settings
from tests.e2e.proxy_support import AGENT_KEY, audit_records

pytestmark = pytest.mark.e2e

TOOLS: Any = [{"name": n, "input_schema": {"type": "object"}} for n in ("Bash", "Read", "WebFetch")]
OAI_TOOLS: Any = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("Bash", "Read", "WebFetch")
]
USER: Any = [{"role": "user", "content": "review my branch"}]
DENIED_BY = "code-review@1 allowed-tools"
CURL = "curl -s https://example.com/install.sh"


@pytest.fixture
def demo_settings(tmp_path: Path) -> Settings:
    consumers = {"e2e-agent": {"api_keys": [AGENT_KEY]}}
    return embedded_settings(
        tmp_path / "data", providers={"demo": {"type": "demo"}}, consumers=consumers
    )


@pytest.fixture
def url(start_gateway: StartGateway, demo_settings: Settings) -> str:
    return start_gateway(demo_settings)


def ant(url: str) -> anthropic.AsyncAnthropic:
    headers = {"X-Skill": "code-review"}
    return anthropic.AsyncAnthropic(
        base_url=url, api_key=AGENT_KEY, default_headers=headers, max_retries=0
    )


def oai(url: str) -> openai.AsyncOpenAI:
    headers = {"X-Skill": "code-review"}
    return openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key=AGENT_KEY, default_headers=headers, max_retries=0
    )


def check_first_turn(blocks: list[Any]) -> None:
    """git status allowed, curl | sh replaced by a note naming the rule, WebFetch never offered."""
    assert blocks[0].type == "text" and blocks[0].text.startswith("[demo]")
    uses = [(b.name, b.input) for b in blocks if b.type == "tool_use"]
    assert uses == [
        ("Bash", {"command": "git status", "description": "Show the working tree status"}),
        ("Read", {"file_path": "README.md"}),
    ]
    notes = [b.text for b in blocks[1:] if b.type == "text"]
    assert len(notes) == 1 and DENIED_BY in notes[0] and CURL in notes[0]


async def anthropic_session(client: anthropic.AsyncAnthropic, stream: bool) -> tuple[Any, Any]:
    """Turn 1 (stream or not), then turn 2 with a result for each tool call the agent got."""
    kw: Any = {"model": "skillwarden-demo", "max_tokens": 512, "tools": TOOLS}
    if stream:
        async with client.messages.stream(messages=USER, **kw) as s:
            first = await s.get_final_message()
    else:
        first = await client.messages.create(messages=USER, **kw)
    results = [
        {"type": "tool_result", "tool_use_id": b.id, "content": f"ran {b.name}"}
        for b in first.content
        if b.type == "tool_use"
    ]
    history: Any = [
        *USER,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": results},
    ]
    return first, await client.messages.create(messages=history, **kw)


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_sdk_two_turns(url: str, demo_settings: Settings, stream: bool) -> None:
    async with ant(url) as client:
        first, final = await anthropic_session(client, stream)
    assert first.model == "skillwarden-demo" and first.stop_reason == "tool_use"
    check_first_turn(first.content)
    assert final.stop_reason == "end_turn" and len(final.content) == 1
    text = final.content[0].text
    assert text.startswith("[demo] 2 tool result(s)") and "1 of my tool calls was denied" in text

    first_rec, second_rec = await audit_records(demo_settings, 2)
    assert (first_rec.provider, first_rec.skill, first_rec.decision) == (
        "demo",
        "code-review",
        "partial",
    )
    assert list(first_rec.tools_removed) == ["WebFetch"]
    calls = [(c["name"], c["decision"], c["rule"]) for c in first_rec.tool_calls]
    assert calls == [
        ("Bash", "allow", "Bash(git status)"),
        ("Bash", "deny", DENIED_BY),
        ("Read", "allow", "Read"),
    ]
    assert list(second_rec.tool_calls) == []


async def openai_turn(client: openai.AsyncOpenAI, stream: bool) -> tuple[str, list[Any]]:
    """The assistant text and (name, arguments) of each tool call, streamed or not."""
    kw: Any = {"model": "gpt-4o", "messages": USER, "tools": OAI_TOOLS}
    if not stream:
        done = await client.chat.completions.create(**kw)
        assert done.model == "skillwarden-demo"
        message = done.choices[0].message
        calls = [
            (tc.function.name, orjson.loads(tc.function.arguments))
            for tc in message.tool_calls or []
        ]
        return message.content or "", calls
    content, args, names = "", dict[int, str](), dict[int, str]()
    async for chunk in await client.chat.completions.create(stream=True, **kw):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                if tc.function and tc.function.name:
                    names[tc.index] = tc.function.name
                args[tc.index] = args.get(tc.index, "") + (
                    tc.function and tc.function.arguments or ""
                )
    return content, [(names[i], orjson.loads(args[i])) for i in sorted(names)]


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_sdk_allowed_and_denied(
    url: str, demo_settings: Settings, stream: bool
) -> None:
    async with oai(url) as client:
        content, calls = await openai_turn(client, stream)
    assert content.startswith("[demo]") and DENIED_BY in content and CURL in content
    assert [(n, a.get("command") or a.get("file_path")) for n, a in calls] == [
        ("Bash", "git status"),
        ("Read", "README.md"),
    ]
    (record,) = await audit_records(demo_settings, 1)
    assert record.provider == "demo-openai" and record.endpoint == "/v1/chat/completions"
    assert [(c["name"], c["decision"]) for c in record.tool_calls] == [
        ("Bash", "allow"),
        ("Bash", "deny"),
        ("Read", "allow"),
    ]


async def test_models_list_the_demo_model(url: str) -> None:
    async with oai(url) as o, ant(url) as a:
        assert [m.id for m in (await o.models.list()).data] == ["skillwarden-demo"]
        assert [m.id for m in (await a.models.list()).data] == ["skillwarden-demo"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "skillwarden"
    env = {**os.environ, "SKILLWARDEN_STORAGE": "postgresql://nowhere.invalid/x"}  # ignored
    return subprocess.run(
        [str(cli), "demo", *args], check=False, capture_output=True, text=True, timeout=60, env=env
    )


def test_skillwarden_demo_prints_the_session() -> None:
    proc = run_cli()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "DEMO PROVIDER: responses are scripted" in out
    assert "ALLOWED Bash" in out and "git status" in out
    assert "DENIED Bash" in out and CURL in out and f"rule: {DENIED_BY}" in out
    assert "WebFetch (not in the skill's allowed-tools)" in out
    assert "Audit lines (2)" in out and "Bash:allow, Bash:deny, Read:allow" in out
    assert "[demo] 2 tool result(s)" in out
    assert "sk-sw-" not in out + proc.stderr  # keys are never printed


def test_skillwarden_demo_json() -> None:
    proc = run_cli("--json", "--skill", "code-review")
    assert proc.returncode == 0, proc.stderr
    data = orjson.loads(proc.stdout)
    first, second = data["steps"]
    assert [c["decision"] for c in first["tool_calls"]] == ["allow", "deny", "allow"]
    assert second["text"].startswith("[demo]")
    assert [r["request_id"] for r in data["audit"]] == [first["request_id"], second["request_id"]]
    assert data["audit"][1]["prev_hash"] == data["audit"][0]["hash"]


def test_skillwarden_demo_help_has_an_example() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0 and "Example: skillwarden demo" in proc.stdout
