"""Two `skillwarden serve` processes on one PostgreSQL schema and one Redis key prefix:
registry changes propagate by notice, the audit chain stays one chain, budgets are shared."""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
import redis
import yaml

from gateway.state.audit import open_audit_store
from gateway.state.counters import Limit, open_counters
from gateway.state.keys import open_key_store
from tests.e2e.upstreams import ScriptedAnthropic, anthropic_message, json_reply

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]

SKILLWARDEN = Path(sys.executable).with_name("skillwarden")
CLEAN_ENV = {"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "LC_ALL": "C.UTF-8"}
PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
NOTICE_BOUND_S = 1.0  # Redis up: far below the 5 s latest-version TTL and the reload below
RELOAD_S = 300.0  # so a change seen within NOTICE_BOUND_S cannot have come from the reload
GIT_STATUS = ("Bash", {"command": "git status"})
CHECK = "/v1/tool-calls/check"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def skill_md(name: str, tools: str) -> str:
    return f"---\nname: {name}\ndescription: Replica test skill.\nallowed-tools: {tools}\n---\nB.\n"


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"sw_replicas_{secrets.token_hex(6)}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"swtest:{secrets.token_hex(6)}:"  # counters' keys; the notice channel too
    yield prefix
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@dataclass
class Cluster:
    a: str
    b: str
    admin: str
    agent: str
    config: Path
    storage: str
    logs: list[Path]
    procs: list[subprocess.Popen[bytes]]

    def headers(self, skill: str) -> dict[str, str]:
        return {"x-api-key": self.agent, "x-skill": skill, "anthropic-version": "2023-06-01"}

    async def publish(self, via: str, name: str, tools: str) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                f"{via}/admin/skills",
                content=skill_md(name, tools),
                headers={"x-api-key": self.admin, "content-type": "text/markdown"},
            )
        assert answer.status_code == 201, answer.text

    async def check(self, via: str, skill: str, command: str) -> dict[str, Any]:
        body = {"skill": skill, "tool": "Bash", "input": {"command": command}, "cwd": "/w"}
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(via + CHECK, json=body, headers={"x-api-key": self.agent})
        result: dict[str, Any] = answer.json()
        return result

    async def until(self, via: str, skill: str, command: str, decision: str) -> float:
        """Seconds until `via` decides `command` as `decision` (polled, at most 10 s)."""
        start = time.monotonic()
        for _ in range(1000):
            if (await self.check(via, skill, command)).get("decision") == decision:
                return time.monotonic() - start
            assert time.monotonic() - start < 10, f"{via} never decided {decision}"
            await asyncio.sleep(0.01)
        raise AssertionError("unreachable")

    async def message(self, via: str, skill: str) -> httpx.Response:
        body = {"model": "claude-opus-4-8", "max_tokens": 1000, "messages": [
            {"role": "user", "content": "go"}]}  # fmt: skip
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(f"{via}/v1/messages", json=body, headers=self.headers(skill))


def write_config(
    path: Path, storage: str, state: dict[str, Any], upstream: str, **extra: Any
) -> None:
    config = {
        "storage": storage,
        "state": state,
        "server": {"registry_reload_s": RELOAD_S, **extra.pop("server", {})},
        "admin": {"publish_sample_skills": False},
        "providers": {
            "anthropic": {
                "type": "anthropic",
                "base_url": upstream,
                "api_key": "sk-ant-replica-test",
            }
        },  # fmt: skip
        "skills": {
            "budgeted": {"budgets": [{"window": "hour", "tokens": 10_000}]},
            "counted": {"budgets": [{"window": "hour", "requests": 6}]},
        },
        **extra,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


@asynccontextmanager
async def replica(config: Path, log: Path) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """`skillwarden serve --config` until the block ends; up means /healthz answered 200."""
    port = free_port()
    cmd = [str(SKILLWARDEN), "serve", "--config", str(config), "--port", str(port)]
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=CLEAN_ENV)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=1) as client:
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"replica did not come up: {log.read_text()}"
                await asyncio.sleep(0.1)
        yield url, proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # graceful: the audit writer flushes
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def make_keys(storage: str) -> tuple[str, str]:
    store = open_key_store(storage)
    await store.open()
    try:
        _, admin = await store.create("admin", "ops", None)
        _, agent = await store.create("agent", "bot", None)
        return admin, agent
    finally:
        await store.close()


@asynccontextmanager
async def two_replicas(
    tmp: Path, storage: str, state: dict[str, Any], upstream: str, **extra: Any
) -> AsyncIterator[Cluster]:
    admin, agent = await make_keys(storage)
    config = tmp / "skillwarden.yaml"
    write_config(config, storage, state, upstream, **extra)
    logs = [tmp / "a.log", tmp / "b.log"]
    # One after the other: the first start creates the schema's tables.
    async with replica(config, logs[0]) as (a, pa), replica(config, logs[1]) as (b, pb):
        yield Cluster(a, b, admin, agent, config, storage, logs, [pa, pb])


@pytest.fixture
async def cluster(
    tmp_path: Path, pg_url: str, redis_prefix: str, scripted_anthropic: ScriptedAnthropic
) -> AsyncIterator[Cluster]:
    state = {"url": REDIS_URL, "key_prefix": redis_prefix}
    async with two_replicas(tmp_path, pg_url, state, scripted_anthropic.url) as found:
        yield found


async def test_publish_and_change_through_a_are_enforced_by_b(
    cluster: Cluster, scripted_anthropic: ScriptedAnthropic
) -> None:
    a, b = cluster.a, cluster.b
    assert (await cluster.check(b, "probe", "git status"))["error"]["code"] == "unknown_skill"
    await cluster.publish(a, "probe", "Read Bash(git:*)")  # B cached "unknown" just now
    first = await cluster.until(b, "probe", "git status", "allow")
    assert first < NOTICE_BOUND_S, first
    scripted_anthropic.enqueue(json_reply(anthropic_message("Checking.", [GIT_STATUS])))
    kept = (await cluster.message(b, "probe")).json()
    assert [c["type"] for c in kept["content"]] == ["text", "tool_use"]

    assert (await cluster.check(b, "probe", "git log"))["skill_version"] == "1"  # cached, fresh
    await cluster.publish(a, "probe", "Read")  # version 2 narrows allowed-tools
    second = await cluster.until(b, "probe", "git status", "deny")
    assert second < NOTICE_BOUND_S, second
    assert (await cluster.check(b, "probe", "git status"))["skill_version"] == "2"
    scripted_anthropic.enqueue(json_reply(anthropic_message("Checking.", [GIT_STATUS])))
    redacted = (await cluster.message(b, "probe")).json()
    assert [c["type"] for c in redacted["content"]] == ["text", "text"]
    assert "probe@2" in redacted["content"][1]["text"]
    print(
        f"\npropagation A->B: new skill {first * 1000:.0f} ms, new version {second * 1000:.0f} ms"
    )


async def test_cli_publish_notifies_running_replicas(cluster: Cluster, tmp_path: Path) -> None:
    folder = tmp_path / "cli-probe"
    folder.mkdir()
    (folder / "SKILL.md").write_text(skill_md("cli-probe", "Bash(git:*)"), encoding="utf-8")
    assert (await cluster.check(cluster.b, "cli-probe", "git status"))["error"]["code"]
    cmd = [str(SKILLWARDEN), "publish", str(folder), "--config", str(cluster.config)]
    done = await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, env=CLEAN_ENV, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr, done.stderr
    for via in (cluster.b, cluster.a):
        assert await cluster.until(via, "cli-probe", "git status", "allow") < NOTICE_BOUND_S


async def test_audit_chain_over_both_replicas_is_one_chain(
    cluster: Cluster, scripted_anthropic: ScriptedAnthropic
) -> None:
    await cluster.publish(cluster.a, "probe", "Bash(git:*)")
    await cluster.until(cluster.b, "probe", "git status", "allow")
    calls: list[Awaitable[object]] = [
        cluster.check((cluster.a, cluster.b)[i % 2], "probe", f"git log -{i}") for i in range(60)
    ]
    calls += [cluster.message((cluster.a, cluster.b)[i % 2], "probe") for i in range(10)]
    await asyncio.gather(*calls)  # both processes append at the same time
    for proc in cluster.procs:
        stop(proc)  # flushes every queued record
    verify = await asyncio.to_thread(
        subprocess.run,
        [str(SKILLWARDEN), "audit", "verify", "--storage", cluster.storage],
        capture_output=True, text=True, env=CLEAN_ENV, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    store = open_audit_store(cluster.storage)
    await store.open()
    try:
        result = await store.verify()
        records = await store.query(limit=10_000)
    finally:
        await store.close()
    total = len(records)
    assert total >= 70 and result.ok and result.checked == total
    assert f"ok {total} record(s)" in verify.stdout, verify.stdout
    assert len({r.prev_hash for r in records}) == total  # no fork: every link used once


async def test_requests_split_over_both_replicas_share_one_budget(
    cluster: Cluster, scripted_anthropic: ScriptedAnthropic, redis_prefix: str
) -> None:
    for name in ("budgeted", "counted"):
        await cluster.publish(cluster.a, name, "Read")
    await cluster.until(cluster.b, "counted", "ls", "deny")  # B knows both skills
    # Request limit, sequential: exactly 6 of 10 pass, whichever replica they hit.
    replicas = (cluster.a, cluster.b)
    sequential = [await cluster.message(replicas[i % 2], "counted") for i in range(10)]
    assert [r.status_code for r in sequential] == [200] * 6 + [429] * 4
    assert "counted" in sequential[-1].json()["error"]["message"]
    # Token budget, concurrent: replies are slow so every reservation is made before any
    # settles; 50 x (estimate + max_tokens 1,000) against 10,000 admits at most 10.
    scripted_anthropic.enqueue(*[json_reply(anthropic_message("ok")).slow(1.0)] * 50)
    answers = await asyncio.gather(
        *(cluster.message((cluster.a, cluster.b)[i % 2], "budgeted") for i in range(50))
    )
    admitted = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert 1 <= len(admitted) <= 10 and len(admitted) + len(refused) == 50
    for r in refused:
        assert int(r.headers["retry-after"]) >= 1 and "budgeted" in r.json()["error"]["message"]
    counters = open_counters(REDIS_URL, redis_prefix)
    limit = Limit("budgeted", "hour", "tokens", 10_000)
    try:
        for _ in range(100):  # settles land after the responses: wait, bounded
            used = (await counters.usage(limit)).used
            if used == 59 * len(admitted):  # 42 input + 17 output tokens each, settled
                break
            await asyncio.sleep(0.05)
        assert used == 59 * len(admitted) <= 10_000, used
    finally:
        await counters.aclose()


async def test_without_notices_the_periodic_reload_bounds_propagation(
    tmp_path: Path, pg_url: str, scripted_anthropic: ScriptedAnthropic
) -> None:
    dead = {"url": f"redis://127.0.0.1:{free_port()}/0", "timeout_s": 0.2}  # nothing listens
    server = {"registry_reload_s": 1.0}
    async with two_replicas(tmp_path, pg_url, dead, scripted_anthropic.url, server=server) as found:
        assert (await found.check(found.b, "probe", "git status"))["error"]["code"]
        await found.publish(found.a, "probe", "Bash(git:*)")
        elapsed = await found.until(found.b, "probe", "git status", "allow")
        assert elapsed < 2.5, elapsed  # the 1 s reload, not the 5 s latest-version TTL
        print(f"\npropagation A->B without notices (reload every 1 s): {elapsed * 1000:.0f} ms")
    for log in found.logs:
        assert log.read_text().count("registry notices unavailable") == 1, log.read_text()
