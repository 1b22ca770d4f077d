"""`skillwarden skills list|show`: read the registry the gateway serves from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from gateway.cli_common import (
    CliError,
    console,
    data_dir_override,
    load_cli_settings,
    opened_skill_store,
    print_json,
    run,
)
from gateway.settings import Settings
from gateway.skill_views import skill_detail_view, skill_summary_view
from skills_registry.manifest import SkillVersion

__all__ = ["skills_app"]

skills_app = typer.Typer(help="List and inspect published skills.", no_args_is_help=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="skillwarden.yaml (default: $SKILLWARDEN_CONFIG)."),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default ./.skillwarden).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@skills_app.command("list", epilog="Example: skillwarden skills list --json")
def list_command(
    as_json: JsonOpt = False, config: ConfigOpt = None, data_dir: DataDirOpt = None
) -> None:
    """The latest version of every published skill."""
    settings = load_cli_settings(config, data_dir_override(data_dir))
    latest = run(_latest(settings))
    if as_json:
        print_json([skill_summary_view(v) for v in latest])
        return
    table = Table(title=f"{len(latest)} skill(s)", title_justify="left")
    for column in ("name", "version", "digest", "publisher", "published", "tools", "warnings"):
        table.add_column(column)
    for v in latest:
        tools = v.manifest.allowed_tools
        table.add_row(
            v.name,
            v.version,
            v.digest[:19],
            escape(v.publisher),
            v.published_at.strftime("%Y-%m-%d %H:%M"),
            "-" if tools is None else str(len(tools)),
            str(len(v.warnings)),
        )
    console.print(table)


async def _latest(settings: Settings) -> list[SkillVersion]:
    async with opened_skill_store(settings) as store:
        return await store.list_latest()


@skills_app.command(
    "show",
    epilog="Example: skillwarden skills show code-review --json  (or code-review@1)",
)
def show_command(
    ref: Annotated[
        str, typer.Argument(metavar="NAME[@VERSION]", help="Skill, optionally @version.")
    ],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Versions, digest, allowed-tools, compiled policy rules and warnings of one skill."""
    settings = load_cli_settings(config, data_dir_override(data_dir))
    selected, versions = run(_one(settings, ref))
    if as_json:
        print_json(skill_detail_view(selected, versions))
        return
    _print_detail(selected, versions)


async def _one(settings: Settings, ref: str) -> tuple[SkillVersion, list[SkillVersion]]:
    name, _, version = ref.partition("@")
    async with opened_skill_store(settings) as store:
        selected = await store.get_version(name, version or None)
        if selected is None:
            raise CliError(f"no skill {ref!r} in the registry at {settings.storage_url}")
        return selected, await store.list_versions(name)


def _print_detail(v: SkillVersion, versions: list[SkillVersion]) -> None:
    m = v.manifest
    console.print(f"[bold]{v.ref}[/]  {v.digest}")
    console.print(f"  {escape(m.description)}")
    console.print(f"  publisher {escape(v.publisher)}, published {v.published_at.isoformat()}")
    history = Table(title="versions", title_justify="left")
    for column in ("version", "digest", "publisher", "published"):
        history.add_column(column)
    for old in versions:
        history.add_row(
            old.version, old.digest, escape(old.publisher), old.published_at.isoformat()
        )
    console.print(history)
    tools = m.allowed_tools
    console.print(
        "allowed-tools: "
        + ("(none declared)" if tools is None else escape(" ".join(tools)) or "(empty)")
    )
    rules = Table(title="compiled rules", title_justify="left")
    for column in ("subject", "tool", "kind", "spec"):
        rules.add_column(column, overflow="fold")
    for line in v.policy:
        rules.add_row(*(escape(part) for part in line))
    console.print(rules)
    for warning in v.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
