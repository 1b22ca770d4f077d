"""audit.retention_days on the real app under uvicorn: the gateway prunes at start-up, and
keeps everything when the key is unset."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.settings import Settings
from gateway.state.audit import AuditRecord, VerifyResult, open_audit_store
from tests.e2e.conftest import StartGateway, embedded_settings

pytestmark = pytest.mark.e2e


def seed(url: str) -> None:
    async def write() -> None:
        store = open_audit_store(url)
        await store.open()
        for i, age in enumerate([40, 35, 0]):
            ts = datetime.now(UTC) - timedelta(days=age)
            await store.append(
                AuditRecord(request_id=f"r{i}", endpoint="/v1/messages", decision="allow", ts=ts)
            )
        await store.close()

    asyncio.run(write())


def stored_seqs(url: str) -> list[int]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        seqs = [seq for (seq,) in conn.execute("SELECT seq FROM audit_records ORDER BY seq")]
    conn.close()
    return seqs


def verify(url: str) -> VerifyResult:
    async def check() -> VerifyResult:
        store = open_audit_store(url)
        await store.open()
        try:
            return await store.verify()
        finally:
            await store.close()

    return asyncio.run(check())


def settings_for(tmp_path: Path, **audit: object) -> Settings:
    settings = embedded_settings(tmp_path / "data", audit=audit)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    seed(settings.audit_storage_url)
    return settings


def test_gateway_prunes_old_records_at_start_up(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    settings = settings_for(tmp_path, retention_days=30)
    url = settings.audit_storage_url
    start_gateway(settings)
    deadline = time.monotonic() + 10
    while stored_seqs(url) != [3] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored_seqs(url) == [3]
    result = verify(url)
    assert result.ok and result.checked == 1 and result.checkpoint_seq == 2


def test_gateway_without_retention_days_deletes_nothing(
    tmp_path: Path, start_gateway: StartGateway
) -> None:
    settings = settings_for(tmp_path)
    start_gateway(settings)
    time.sleep(0.3)
    assert stored_seqs(settings.audit_storage_url) == [1, 2, 3]
