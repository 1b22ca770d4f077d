"""`skillwarden audit` and `skillwarden audit verify` through Typer's CliRunner, on SQLite."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from gateway.cli import app
from gateway.cli_audit import audit_app, parse_since
from gateway.state.audit import AuditRecord, open_audit_store

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # rich wraps tables to the terminal width


def seed(url: str) -> list[AuditRecord]:
    now = datetime.now(UTC)
    records = [
        AuditRecord(
            request_id="old",
            endpoint="/v1/messages",
            decision="allow",
            status=200,
            skill="code-review",
            ts=now - timedelta(days=3),
        ),
        AuditRecord(
            request_id="ok",
            endpoint="/v1/messages",
            decision="allow",
            status=200,
            skill="code-review",
            skill_version="1.0.0",
            consumer="alice",
            model="claude-sonnet-4",
            tools_offered=["Read", "Bash"],
            tools_removed=["Bash"],
        ),
        AuditRecord(
            request_id="denied",
            endpoint="/v1/messages",
            decision="deny",
            status=403,
            skill="code-review",
            reasons=["tool_not_allowed: Bash(curl *) by no rule"],
            tool_calls=[{"name": "Bash", "input_digest": "d", "decision": "deny", "rule": None}],
        ),
        AuditRecord(
            request_id="other",
            endpoint="/v1/chat/completions",
            decision="deny",
            status=403,
            skill="pdf-processing",
        ),
    ]

    async def write() -> None:
        store = open_audit_store(url)
        await store.open()
        for r in records:
            await store.append(r)
        await store.close()

    asyncio.run(write())
    return records


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    seed(url)
    return url


def request_ids(output: str) -> list[str]:
    return [orjson.loads(line)["request_id"] for line in output.splitlines()]


def test_jsonl_lists_everything_oldest_first_with_chain_fields(db: str) -> None:
    result = runner.invoke(audit_app, ["--storage", db, "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert request_ids(result.stdout) == ["old", "ok", "denied", "other"]
    first = orjson.loads(result.stdout.splitlines()[0])
    assert len(first["hash"]) == 64 and first["prev_hash"] == "0" * 64


def test_filters_skill_since_decision_and_limit(db: str) -> None:
    args = ["--storage", db, "--format", "jsonl"]
    by_skill = runner.invoke(audit_app, [*args, "--skill", "code-review", "--since", "24h"])
    assert request_ids(by_skill.stdout) == ["ok", "denied"]
    denied = runner.invoke(audit_app, [*args, "--decision", "deny"])
    assert request_ids(denied.stdout) == ["denied", "other"]
    newest = runner.invoke(audit_app, [*args, "--limit", "1"])
    assert request_ids(newest.stdout) == ["other"]
    week = runner.invoke(audit_app, [*args, "--since", "7d", "--skill", "code-review"])
    assert request_ids(week.stdout) == ["old", "ok", "denied"]


def test_csv_has_a_header_and_json_cells(db: str) -> None:
    result = runner.invoke(
        audit_app, ["--storage", db, "--format", "csv", "--skill", "code-review"]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["request_id"] for r in rows] == ["old", "ok", "denied"]
    assert orjson.loads(rows[1]["tools_removed"]) == ["Bash"]
    assert rows[0]["consumer"] == "" and rows[2]["decision"] == "deny"


def test_table_shows_the_records(db: str) -> None:
    result = runner.invoke(audit_app, ["--storage", db, "--decision", "deny"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "2 audit record(s)" in result.stdout
    assert "pdf-processing" in result.stdout and "Bash:deny" in result.stdout
    assert "tool_not_allowed" in result.stdout


def test_main_cli_registers_audit_and_help_has_an_example(db: str) -> None:
    result = runner.invoke(
        app, ["audit", "--storage", db, "--format", "jsonl", "--skill", "pdf-processing"]
    )
    assert result.exit_code == 0, result.output
    assert request_ids(result.stdout) == ["other"]
    helped = runner.invoke(app, ["audit", "--help"], env=WIDE)
    assert helped.exit_code == 0
    assert "skillwarden audit --skill code-review --since 24h" in helped.stdout


def test_storage_defaults_to_the_configured_data_dir(tmp_path: Path) -> None:
    seed(f"sqlite:///{(tmp_path / 'skillwarden.db').absolute()}")
    result = runner.invoke(audit_app, ["--data-dir", str(tmp_path), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4


def test_verify_ok(db: str) -> None:
    result = runner.invoke(app, ["audit", "verify", "--storage", db])
    assert result.exit_code == 0, result.output
    assert "4 record(s)" in result.stdout and "intact" in result.stdout


def test_verify_reports_the_first_broken_record(db: str) -> None:
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        [(record_id,)] = conn.execute("SELECT id FROM audit_records WHERE seq = 3").fetchall()
        conn.execute(
            "UPDATE audit_records SET body = replace(body, '\"deny\"', '\"allow\"') WHERE seq = 3"
        )
    conn.close()
    result = runner.invoke(app, ["audit", "verify", "--storage", db], env=WIDE)
    assert result.exit_code == 1
    assert "BROKEN" in result.stderr and record_id in result.stderr
    assert "after 2 good record(s)" in result.stderr


def test_missing_sqlite_file_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = runner.invoke(audit_app, ["--storage", f"sqlite:///{missing}"], env=WIDE)
    assert result.exit_code == 1
    assert "no audit log" in result.stderr
    assert not missing.exists()


def test_bad_since_is_a_usage_error(db: str) -> None:
    result = runner.invoke(audit_app, ["--storage", db, "--since", "yesterday"], env=WIDE)
    assert result.exit_code == 2
    assert "24h" in result.output


def test_parse_since_forms() -> None:
    now = datetime(2026, 5, 9, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-05-01T10:00:00Z") == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert parse_since("2026-05-01T10:00:00") == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert parse_since("2026-05-01T12:00:00+02:00") == datetime(2026, 5, 1, 10, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_since("soon")
