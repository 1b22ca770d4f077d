"""`skillwarden demo`: one scripted agent session through a real gateway, printed step by step.

The gateway runs in-process (uvicorn, free loopback port, temporary data dir, embedded defaults,
the environment ignored) with the demo provider. The "agent" is this command: it speaks the
Anthropic Messages wire format over httpx (a runtime dependency; the anthropic SDK is dev-only),
sends a user turn offering Bash, Read and WebFetch, answers the tool calls it gets back with
simulated results (nothing is executed), and prints what the gateway did and the audit lines.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import uvicorn
from rich.markup import escape
from rich.table import Table

from gateway.app import create_app
from gateway.bootstrap import prepare_data_dir
from gateway.cli_common import CliError, console, print_json, run
from gateway.demo import BANNER
from gateway.demo.model import DENIAL_MARK
from gateway.settings import Settings, load_settings
from gateway.state.audit import AuditRecord, open_audit_store, record_to_dict
from gateway.state.keys import open_key_store

__all__ = ["demo_command"]

PROMPT = "Review the changes on this branch, please."
_OBJ = {"type": "object"}
TOOLS: list[dict[str, Any]] = [
    {"name": "Bash", "description": "Run a shell command.", "input_schema": _OBJ},
    {"name": "Read", "description": "Read a file.", "input_schema": _OBJ},
    {"name": "WebFetch", "description": "Fetch a URL.", "input_schema": _OBJ},
]
# What the agent "ran": canned, labelled, nothing is executed on this machine.
SIMULATED = {
    "Bash": "[simulated] On branch main. Changes not staged for commit: src/app.py",
    "Read": "[simulated] # Example project. A small web app.",
    "WebFetch": "[simulated] Example Domain. This domain is for use in examples.",
}


@dataclass
class Step:
    """One request of the session, as the agent saw it."""

    turn: int
    request_id: str
    status: int
    text: str = ""  # the model's own text (gateway notes left out)
    calls: list[dict[str, Any]] = field(default_factory=list)  # name, input|reason, decision
    content: list[dict[str, Any]] = field(default_factory=list)


def demo_command(
    skill: Annotated[
        str, typer.Option(help="The sample skill the agent runs under.")
    ] = "code-review",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Run a two-turn agent session against the built-in demo provider (a scripted model, no key
    needed) and print each tool call the gateway allowed or denied, and the audit lines."""
    # This command prints its own banner; the runtime's start-up warning would repeat it.
    logging.getLogger("skillwarden.demo").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="skillwarden-demo-") as tmp:
        run(_demo(Path(tmp), skill, as_json))


async def _demo(tmp: Path, skill: str, as_json: bool) -> None:
    # env={}: a user's SKILLWARDEN_* (say, a production storage URL) must not reach the demo.
    overrides = {"data_dir": str(tmp), "providers": {"demo": {"type": "demo"}}}
    settings = load_settings(None, {}, overrides)
    key = await _agent_key(settings)
    notices: list[str] = []  # bootstrap's banners and one-time keys: not the demo's business
    async with _gateway(settings, notices) as url:
        steps = await _session(url, key, skill)
    records = await _audit(settings, {s.request_id for s in steps})
    if as_json:
        rows = [record_to_dict(r) for r in records]
        print_json({"skill": skill, "steps": [_step_json(s) for s in steps], "audit": rows})
        return
    _print(url, skill, steps, records)


async def _agent_key(settings: Settings) -> str:
    prepare_data_dir(settings)
    store = open_key_store(settings.storage_url)
    await store.open()
    try:
        _, plaintext = await store.create("agent", "demo-agent", None)
        return plaintext
    finally:
        await store.close()


@asynccontextmanager
async def _gateway(settings: Settings, notices: list[str]) -> AsyncIterator[str]:
    """The gateway under uvicorn on this event loop, on a socket bound before it starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings, say=notices.append)
    config = uvicorn.Config(app, log_level="error", lifespan="on", server_header=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                raise CliError(f"the gateway did not start: {task.exception()!r}")
            await asyncio.sleep(0.02)
        yield url
    finally:
        server.should_exit = True  # lifespan shutdown flushes the audit writer
        await task
        sock.close()


async def _session(url: str, key: str, skill: str) -> list[Step]:
    headers = {"x-api-key": key, "x-skill": skill, "anthropic-version": "2023-06-01"}
    body: dict[str, Any] = {
        "model": "skillwarden-demo",
        "max_tokens": 1024,
        "tools": TOOLS,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30.0) as client:
        first = await _send(client, body, 1)
        uses = [b for b in first.content if b.get("type") == "tool_use"]
        if not uses:
            return [first]
        results = [
            {
                "type": "tool_result",
                "tool_use_id": b["id"],
                "content": SIMULATED.get(b["name"], "[simulated] done"),
            }
            for b in uses
        ]
        body["messages"] += [
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": results},
        ]
        return [first, await _send(client, body, 2)]


async def _send(client: httpx.AsyncClient, body: dict[str, Any], turn: int) -> Step:
    resp = await client.post("/v1/messages", json=body)
    data = resp.json()
    if resp.status_code != 200:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        raise CliError(f"the gateway refused turn {turn}: HTTP {resp.status_code} {error}")
    step = Step(turn, resp.headers.get("x-skillwarden-request-id", ""), resp.status_code)
    step.content = data["content"]
    texts = []
    for block in step.content:
        if block.get("type") == "tool_use":
            step.calls.append({"name": block["name"], "input": block["input"], "decision": "allow"})
        elif block.get("type") == "text" and block["text"].startswith(DENIAL_MARK):
            name = block["text"].removeprefix(DENIAL_MARK).split()[0]
            step.calls.append({"name": name, "reason": block["text"], "decision": "deny"})
        elif block.get("type") == "text":
            texts.append(block["text"])
    step.text = "\n".join(texts)
    return step


async def _audit(settings: Settings, request_ids: set[str]) -> list[AuditRecord]:
    store = open_audit_store(settings.audit_storage_url)
    await store.open()
    try:
        return [r for r in await store.query(limit=1000) if r.request_id in request_ids]
    finally:
        await store.close()


def _step_json(step: Step) -> dict[str, Any]:
    return {
        "turn": step.turn,
        "request_id": step.request_id,
        "text": step.text,
        "tool_calls": step.calls,
    }


def _print(url: str, skill: str, steps: list[Step], records: list[AuditRecord]) -> None:
    by_id = {r.request_id: r for r in records}
    console.print(f"[bold magenta]{BANNER}[/]")
    console.print(
        f"Gateway on {url} (temporary data dir), skill [bold]{escape(skill)}[/], "
        "agent key of consumer demo-agent, provider `demo` (model skillwarden-demo).\n"
    )
    for step in steps:
        record = by_id.get(step.request_id)
        _print_step(step, record)
    _print_audit(records)
    console.print(
        "\nDenied calls never reached the agent: the gateway replaced each with a note naming "
        "the rule. Next: docs/demo.md, then `skillwarden serve` with a provider key."
    )


def _print_step(step: Step, record: AuditRecord | None) -> None:
    table = Table(title=f"Turn {step.turn}", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("detail", overflow="fold")
    if step.turn == 1:
        offered = ", ".join(str(t["name"]) for t in TOOLS)
        table.add_row("agent sent", f"POST /v1/messages: {PROMPT!r}, tools offered: {offered}")
        if record and record.tools_removed:
            removed = (
                f"{escape(', '.join(record.tools_removed))} (not in the skill's allowed-tools)"
            )
        else:
            removed = "none (the skill's allowed-tools names every offered tool)"
        table.add_row("gateway removed", removed)
    else:
        table.add_row("agent sent", "the results of the allowed tool calls (simulated)")
    table.add_row("model said", escape(step.text))
    rules = [c.get("rule") for c in record.tool_calls] if record else []
    for i, call in enumerate(step.calls):
        rule = rules[i] if i < len(rules) else None
        if call["decision"] == "allow":
            what = f"[green]ALLOWED[/] {call['name']} {escape(str(call['input']))}"
        else:  # the gateway's note: "... denied by the gateway policy (rule: R): <why>"
            why = call["reason"].split("): ", 1)[-1]
            what = f"[bold red]DENIED[/] {call['name']}: {escape(why)}"
        table.add_row(f"tool call {i + 1}", what + (f"  (rule: {escape(rule)})" if rule else ""))
    if record is not None:
        table.add_row("audit", f"{record.request_id}: decision {record.decision}")
    console.print(table)


def _print_audit(records: list[AuditRecord]) -> None:
    table = Table(title=f"Audit lines ({len(records)})", title_justify="left")
    columns = ("request", "consumer", "skill", "provider", "decision", "removed", "tool calls")
    for column in (*columns, "hash"):
        table.add_column(column, overflow="fold")
    for r in records:
        calls = ", ".join(f"{c.get('name')}:{c.get('decision')}" for c in r.tool_calls) or "-"
        table.add_row(
            r.request_id,
            escape(r.consumer or "-"),
            escape(f"{r.skill}@{r.skill_version}" if r.skill else "-"),
            escape(r.provider or "-"),
            r.decision,
            escape(", ".join(r.tools_removed) or "-"),
            escape(calls),
            r.hash[:12],
        )
    console.print(table)
