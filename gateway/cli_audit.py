"""`skillwarden audit`: read the per-skill audit log, `audit verify` its hash chain, and
`audit prune` records older than N days behind a checkpoint."""

from __future__ import annotations

import csv
import enum
import io
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from gateway.cli_common import (
    CliError,
    console,
    data_dir_override,
    err_console,
    load_cli_settings,
    print_json,
    redact_url,
    run,
)
from gateway.state.audit import (
    AuditRecord,
    AuditStore,
    Decision,
    VerifyResult,
    format_ts,
    open_audit_store,
    record_to_dict,
)
from gateway.state.audit_retention import PruneRefused, PruneResult, retention_cutoff
from skills_registry.store_sqlite import sqlite_path

__all__ = ["audit_app", "parse_since"]

_EXAMPLES = (
    "Examples:\n\n"
    "skillwarden audit --skill code-review --since 24h --decision deny\n\n"
    "skillwarden audit --since 2026-05-01T00:00:00Z --format jsonl > audit.jsonl\n\n"
    "skillwarden audit verify\n\n"
    "skillwarden audit prune --older-than-days 90 --dry-run"
)

audit_app = typer.Typer(
    help="Read the audit log (one record per request and per tool-call check).",
    invoke_without_command=True,
)


class OutputFormat(enum.StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


class DecisionFilter(enum.StrEnum):
    allow = "allow"
    deny = "deny"
    partial = "partial"


StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage", help="Audit storage URL (default: audit.storage or storage from config)."
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="skillwarden.yaml (default: $SKILLWARDEN_CONFIG)."),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default ./.skillwarden).")
]

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """30m, 24h, 7d (also s, w) before now, or an ISO 8601 time (UTC when it has no offset)."""
    match = _RELATIVE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: use a duration (30m, 24h, 7d) or an ISO time (2026-05-01T12:00Z)",
            param_hint="--since",
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@audit_app.callback(invoke_without_command=True, epilog=_EXAMPLES)
def audit(
    ctx: typer.Context,
    skill: Annotated[str | None, typer.Option(help="Only records of this skill.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only newer records: 30m, 24h, 7d or an ISO time.")
    ] = None,
    decision: Annotated[DecisionFilter | None, typer.Option(help="Only this decision.")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="Output format.")] = (
        OutputFormat.table
    ),
    limit: Annotated[int, typer.Option(min=1, help="At most this many (the newest).")] = 100,
    storage: StorageOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List audit records, oldest first; filters combine."""
    if ctx.invoked_subcommand is not None:
        return
    since_ts = None if since is None else parse_since(since)
    url = _storage_url(storage, config, data_dir)
    records = run(_query(url, skill, since_ts, decision, limit))
    if fmt is OutputFormat.jsonl:
        for record in records:
            typer.echo(orjson.dumps(record_to_dict(record)).decode())
    elif fmt is OutputFormat.csv:
        typer.echo(_csv(records), nl=False)
    else:
        _print_table(records)


@audit_app.command("verify", epilog="Example: skillwarden audit verify --storage sqlite:///sw.db")
def verify(
    storage: StorageOpt = None, config: ConfigOpt = None, data_dir: DataDirOpt = None
) -> None:
    """Check the whole hash chain; exit 1 and name the first broken record when it is broken."""
    url = _storage_url(storage, config, data_dir)
    result = run(_verify(url))
    if result.ok:
        console.print(f"[green]ok[/] {result.checked} record(s){_from_checkpoint(result)}")
        return
    where = f"record {result.first_broken_id}" if result.first_broken_id else "the end of the log"
    err_console.print(
        f"[bold red]BROKEN[/] at {escape(where)} after {result.checked} good record(s): "
        f"{escape(result.reason or 'unknown')}"
    )
    raise typer.Exit(1)


def _from_checkpoint(result: VerifyResult) -> str:
    if result.checkpoint_seq is None or result.pruned_at is None:
        return ", hash chain intact"
    return (
        f" verified from the checkpoint at #{result.checkpoint_seq} (records before were"
        f" pruned on {format_ts(result.pruned_at)[:10]}), hash chain intact"
    )


_PRUNE_EXAMPLES = (
    "Examples:\n\n"
    "skillwarden audit prune --older-than-days 90 --dry-run\n\n"
    "skillwarden audit prune --older-than-days 90 --json --storage postgresql://db/skillwarden"
)


@audit_app.command("prune", epilog=_PRUNE_EXAMPLES)
def prune(
    older_than_days: Annotated[
        int, typer.Option("--older-than-days", min=1, help="Delete records older than N days.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be deleted.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    storage: StorageOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete the oldest records (a prefix of the chain) and leave a checkpoint, so `audit
    verify` still checks every record that remains."""
    url = _storage_url(storage, config, data_dir)
    cutoff = retention_cutoff(older_than_days)
    result = run(_prune(url, cutoff, older_than_days, dry_run))
    summary = {
        "dry_run": result.dry_run,
        "cutoff": format_ts(result.cutoff),
        "deleted": result.deleted,
        "chunks": result.chunks,
        "checkpoint_seq": result.checkpoint_seq,
        "checkpoint_hash": result.checkpoint_hash,
    }
    if as_json:
        print_json(summary)
        return
    title = "audit prune (dry run: nothing deleted)" if dry_run else "audit prune"
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    table.add_row("older than", format_ts(result.cutoff)[:19].replace("T", " ") + " UTC")
    table.add_row("would delete" if dry_run else "deleted", f"{result.deleted} record(s)")
    table.add_row("transactions", str(result.chunks))
    cp = "-" if result.checkpoint_seq is None else f"#{result.checkpoint_seq}"
    table.add_row(
        "checkpoint", cp + (f"  {result.checkpoint_hash}" if result.checkpoint_hash else "")
    )
    console.print(table)


async def _prune(url: str, cutoff: datetime, days: int, dry_run: bool) -> PruneResult:
    def progress(deleted: int) -> None:
        err_console.print(f"pruned {deleted} record(s)…")

    async with _opened(url) as store:
        try:
            return await store.prune(
                cutoff,
                reason=f"skillwarden audit prune --older-than-days {days}",
                dry_run=dry_run,
                on_progress=progress,
            )
        except PruneRefused as exc:
            raise CliError(f"prune refused: {exc}") from None


def _storage_url(storage: str | None, config: Path | None, data_dir: Path | None) -> str:
    if storage:
        return storage
    return load_cli_settings(config, data_dir_override(data_dir)).audit_storage_url


@asynccontextmanager
async def _opened(url: str) -> AsyncIterator[AuditStore]:
    # Reading must not create an empty log where the user mistyped a path.
    path = sqlite_path(url) if url.startswith("sqlite:") else None
    if path not in (None, ":memory:") and not Path(str(path)).is_file():
        raise CliError(f"no audit log at {path} (wrong --storage or --data-dir?)")
    try:
        store = open_audit_store(url)
        await store.open()
    except Exception as exc:  # any driver error: the user needs the URL and the reason
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CliError(f"cannot open audit storage {redact_url(url)}: {reason}") from None
    try:
        yield store
    finally:
        await store.close()


async def _query(
    url: str,
    skill: str | None,
    since: datetime | None,
    decision: DecisionFilter | None,
    limit: int,
) -> list[AuditRecord]:
    async with _opened(url) as store:
        chosen: Decision | None = None if decision is None else decision.value
        return await store.query(skill=skill, since=since, decision=chosen, limit=limit)


async def _verify(url: str) -> VerifyResult:
    async with _opened(url) as store:
        return await store.verify()


def _csv(records: Sequence[AuditRecord]) -> str:
    rows = [record_to_dict(record) for record in records]
    # The stored-body columns appear only when some record has them (audit.store_bodies).
    columns = list(dict.fromkeys(name for row in rows for name in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    if rows:
        writer.writeheader()
    for row in rows:
        # Lists and objects as JSON inside the cell: lossless, and one row per record.
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    return "" if value is None else value


_DECISION_STYLE = {"allow": "green", "deny": "bold red", "partial": "yellow"}


def _print_table(records: Sequence[AuditRecord]) -> None:
    table = Table(title=f"{len(records)} audit record(s)", title_justify="left")
    for column in ("time (UTC)", "kind", "consumer", "skill", "decision", "status", "model"):
        table.add_column(column, overflow="fold")
    table.add_column("tool calls", overflow="fold")
    table.add_column("reasons", overflow="fold")
    for r in records:
        skill = r.skill or "-"
        if r.skill_version:
            skill += f"@{r.skill_version}"
        calls = ", ".join(f"{c.get('name')}:{c.get('decision')}" for c in r.tool_calls)
        style = _DECISION_STYLE.get(r.decision, "")
        table.add_row(
            format_ts(r.ts)[:19].replace("T", " "),
            r.kind,
            escape(r.consumer or "-"),
            escape(skill),
            f"[{style}]{r.decision}[/]",
            str(r.status),
            escape(r.model or "-"),
            escape(calls or "-"),
            escape("; ".join(r.reasons) or "-"),
        )
    console.print(table)
