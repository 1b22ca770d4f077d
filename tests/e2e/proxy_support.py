"""Shared pieces of the proxy e2e tests: a gateway wired to scripted upstreams, SDK clients,
and the audit records the gateway wrote."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from gateway.settings import Settings
from gateway.state.audit import AuditRecord, open_audit_store
from tests.e2e.conftest import embedded_settings
from tests.e2e.upstreams import ScriptedAnthropic, ScriptedOpenAI

AGENT_KEY = "sk-sw-e2e-agent-key-0123456789abcdef"
REVIEW_ONLY_KEY = "sk-sw-e2e-review-only-0123456789abcd"
PROVIDER_KEY = "sk-ant-provider-SECRET-do-not-leak"
OPENAI_PROVIDER_KEY = "sk-openai-provider-SECRET-do-not-leak"
MSG: Any = [{"role": "user", "content": "check the repo status"}]
CASES = Path(__file__).resolve().parents[1] / "cases" / "claude_code"


@dataclass
class Stack:
    url: str
    settings: Settings
    ant: ScriptedAnthropic
    oai: ScriptedOpenAI

    def anthropic(self, skill: str | None = "code-review", **kw: Any) -> anthropic.AsyncAnthropic:
        headers = {"X-Skill": skill} if skill else {}
        kw.setdefault("api_key", AGENT_KEY)
        return anthropic.AsyncAnthropic(
            base_url=self.url, default_headers=headers, max_retries=0, **kw
        )

    def openai(self, skill: str | None = "code-review", **kw: Any) -> openai.AsyncOpenAI:
        headers = {"X-Skill": skill} if skill else {}
        kw.setdefault("api_key", AGENT_KEY)
        return openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", default_headers=headers, max_retries=0, **kw
        )

    async def records(self, count: int, timeout: float = 5.0) -> list[AuditRecord]:
        """The gateway's audit records once `count` of them are stored (oldest first)."""
        return await audit_records(self.settings, count, timeout)


def stack_settings(tmp: Path, ant_url: str, oai_url: str, **overrides: Any) -> Settings:
    providers = {
        "anthropic": {"type": "anthropic", "base_url": ant_url, "api_key": PROVIDER_KEY},
        "openai": {"type": "openai", "base_url": f"{oai_url}/v1", "api_key": OPENAI_PROVIDER_KEY},
    }
    consumers = {
        "e2e-agent": {"api_keys": [AGENT_KEY]},
        "reviewer": {"api_keys": [REVIEW_ONLY_KEY], "skills": ["code-review"]},
    }
    base: dict[str, Any] = {"providers": providers, "consumers": consumers}
    return embedded_settings(tmp / "data", **{**base, **overrides})


async def audit_records(settings: Settings, count: int, timeout: float = 5.0) -> list[AuditRecord]:
    store = open_audit_store(settings.audit_storage_url)
    await store.open()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = await store.query(limit=10_000)
            if len(found) >= count or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.02)
    finally:
        await store.close()


MakeStack = Callable[..., Stack]


@pytest.fixture
async def upstreams() -> AsyncIterator[tuple[ScriptedAnthropic, ScriptedOpenAI]]:
    async with ScriptedAnthropic() as ant, ScriptedOpenAI() as oai:
        yield ant, oai


@pytest.fixture
def make_stack(
    tmp_path: Path, start_gateway: Any, upstreams: tuple[ScriptedAnthropic, ScriptedOpenAI]
) -> MakeStack:
    """make_stack(**settings_overrides) -> a running gateway in front of the scripted upstreams."""
    ant, oai = upstreams

    def make(**overrides: Any) -> Stack:
        settings = stack_settings(tmp_path, ant.url, oai.url, **overrides)
        return Stack(start_gateway(settings), settings, ant, oai)

    return make


@pytest.fixture
def stack(make_stack: MakeStack) -> Stack:
    return make_stack()
