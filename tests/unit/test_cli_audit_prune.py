"""`skillwarden audit prune` and `audit verify` after it, end to end through the CLI on SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
from typer.testing import CliRunner

from gateway.cli import app
from tests.unit.test_cli_audit import WIDE, db, seed

__all__ = ["db"]  # the fixture, re-used

runner = CliRunner()


def stored_request_ids(url: str) -> list[str]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        rows = conn.execute("SELECT body FROM audit_records ORDER BY seq").fetchall()
    conn.close()
    return [orjson.loads(body)["request_id"] for (body,) in rows]


def test_dry_run_reports_and_deletes_nothing(db: str) -> None:
    result = runner.invoke(
        app, ["audit", "prune", "--older-than-days", "2", "--dry-run", "--storage", db], env=WIDE
    )
    assert result.exit_code == 0, result.output
    assert "dry run" in result.stdout and "would delete" in result.stdout
    assert "1 record(s)" in result.stdout and "#1" in result.stdout
    assert stored_request_ids(db) == ["old", "ok", "denied", "other"]


def test_prune_then_verify_from_the_checkpoint(db: str) -> None:
    pruned = runner.invoke(
        app, ["audit", "prune", "--older-than-days", "2", "--storage", db], env=WIDE
    )
    assert pruned.exit_code == 0, pruned.output
    assert "deleted" in pruned.stdout and "1 record(s)" in pruned.stdout
    assert "pruned 1 record(s)" in pruned.stderr  # progress, on stderr
    assert stored_request_ids(db) == ["ok", "denied", "other"]
    verified = runner.invoke(app, ["audit", "verify", "--storage", db], env=WIDE)
    assert verified.exit_code == 0, verified.output
    assert "3 record(s) verified from the checkpoint at #1" in verified.stdout
    assert "records before were pruned on 20" in verified.stdout


def test_json_output_for_scripts(db: str) -> None:
    result = runner.invoke(
        app, ["audit", "prune", "--older-than-days", "2", "--json", "--storage", db]
    )
    assert result.exit_code == 0, result.output
    data = orjson.loads(result.stdout)
    assert data["deleted"] == 1 and data["dry_run"] is False and data["checkpoint_seq"] == 1
    assert len(data["checkpoint_hash"]) == 64 and data["cutoff"].endswith("Z")
    again = orjson.loads(
        runner.invoke(
            app, ["audit", "prune", "--older-than-days", "2", "--json", "--storage", db]
        ).stdout
    )
    assert (again["deleted"], again["chunks"], again["checkpoint_seq"]) == (0, 0, 1)


def test_nothing_old_enough_deletes_nothing(db: str) -> None:
    result = runner.invoke(
        app, ["audit", "prune", "--older-than-days", "30", "--json", "--storage", db]
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["deleted"] == 0
    assert len(stored_request_ids(db)) == 4


def test_verify_after_prune_still_catches_deleted_rows(db: str) -> None:
    runner.invoke(app, ["audit", "prune", "--older-than-days", "2", "--storage", db])
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 2")
    conn.close()
    result = runner.invoke(app, ["audit", "verify", "--storage", db], env=WIDE)
    assert result.exit_code == 1
    assert "BROKEN" in result.stderr and "checkpoint at #1" in result.stderr


def test_prune_over_a_broken_prefix_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    seed(url)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE audit_records SET ts = '2000-01-01T00:00:00.000000Z' WHERE seq = 3")
        conn.execute("DELETE FROM audit_records WHERE seq = 2")
    conn.close()
    result = runner.invoke(app, ["audit", "prune", "--older-than-days", "2", "--storage", url])
    assert result.exit_code == 1
    assert "error: prune refused" in result.stderr


def test_help_has_an_example_and_days_must_be_positive(db: str) -> None:
    helped = runner.invoke(app, ["audit", "prune", "--help"], env=WIDE)
    assert helped.exit_code == 0
    assert "skillwarden audit prune --older-than-days 90 --dry-run" in helped.stdout
    bad = runner.invoke(app, ["audit", "prune", "--older-than-days", "0", "--storage", db])
    assert bad.exit_code == 2
