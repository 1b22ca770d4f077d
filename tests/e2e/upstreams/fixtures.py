"""Pytest fixtures; register with ``from tests.e2e.upstreams.fixtures import *`` in a conftest."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from .server import ScriptedAnthropic, ScriptedOpenAI, refusing_port

__all__ = ["refused_url", "scripted_anthropic", "scripted_openai"]


@pytest.fixture
async def scripted_anthropic() -> AsyncIterator[ScriptedAnthropic]:
    async with ScriptedAnthropic() as upstream:
        yield upstream


@pytest.fixture
async def scripted_openai() -> AsyncIterator[ScriptedOpenAI]:
    async with ScriptedOpenAI() as upstream:
        yield upstream


@pytest.fixture
def refused_url() -> Iterator[str]:
    """http://127.0.0.1:<port> where nothing listens (connections are refused)."""
    with refusing_port() as port:
        yield f"http://127.0.0.1:{port}"
