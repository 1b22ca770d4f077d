"""Shared CLI plumbing: friendly one-line errors, problem tables, settings and store opening."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gateway.bootstrap import prepare_data_dir
from gateway.settings import ConfigInvalid, Settings, load_settings
from skills_registry.manifest import Problem
from skills_registry.store import SkillStore, open_skill_store

__all__ = [
    "CliError",
    "console",
    "err_console",
    "fail",
    "load_cli_settings",
    "opened_skill_store",
    "print_json",
    "print_problems",
    "redact_url",
    "run",
]

T = TypeVar("T")
# Off a terminal (pipes, CI logs) rich would wrap at 80 columns; lines are kept whole instead.
_WIDTH = None if sys.stdout.isatty() else 200
console = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, width=_WIDTH)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1, no traceback."""


def fail(message: str) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(1)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run with CliError turned into a one-line error and exit code 1."""
    try:
        return asyncio.run(coro)
    except CliError as exc:
        fail(str(exc))


def print_json(data: Any) -> None:
    # Plain stdout, not rich: JSON must not be wrapped or coloured.
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def print_problems(title: str, problems: Iterable[Problem]) -> None:
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in ("field", "rule", "value"):
        table.add_column(column, overflow="fold")
    for p in problems:
        table.add_row(escape(p.field), escape(p.rule), escape(p.value))
    console.print(table)


def redact_url(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db"""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


def load_cli_settings(config: Path | None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings the way `serve` loads them, so every command uses the same storage URL."""
    try:
        return load_settings(config, None, overrides)
    except ConfigInvalid as exc:
        only = exc.problems[0] if len(exc.problems) == 1 else None
        if only is not None and only.rule == "cannot read file":
            fail(f"cannot read config {only.field}: {only.value}")
        print_problems(f"{len(exc.problems)} problem(s) in the configuration", exc.problems)
        raise typer.Exit(1) from None


def data_dir_override(data_dir: Path | None) -> dict[str, Any]:
    return {} if data_dir is None else {"data_dir": str(data_dir)}


@asynccontextmanager
async def opened_skill_store(settings: Settings) -> AsyncIterator[SkillStore]:
    """The configured skill store, opened; an unreachable database is a CliError."""
    url = settings.storage_url
    # The pool logs every failed attempt; the user gets one line from us instead.
    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.CRITICAL)
    try:
        if url.startswith("sqlite:"):
            prepare_data_dir(settings)
        store = open_skill_store(url)
        await store.open()
    except Exception as exc:  # any driver error: the user needs the URL and the reason
        raise CliError(f"cannot open storage {redact_url(url)}: {_one_line(exc)}") from None
    finally:
        pool_log.setLevel(level)
    try:
        yield store
    finally:
        await store.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
