"""The `skillwarden` command: publish, skills, config check, serve (+ audit when present)."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli_common import (
    console,
    data_dir_override,
    err_console,
    fail,
    load_cli_settings,
    opened_skill_store,
    print_json,
    print_problems,
    redact_url,
    run,
)
from gateway.cli_demo import demo_command
from gateway.cli_hook import hook_app
from gateway.cli_serve import serve_command
from gateway.cli_skills import skills_app
from gateway.settings import ConfigInvalid, Settings, load_settings
from gateway.skill_views import publish_result_view
from gateway.state.notify import RegistryEvent, open_notifier
from skills_registry.manifest import SkillInvalid
from skills_registry.publish import publish_skill

__all__ = ["app", "main"]

app = typer.Typer(
    name="skillwarden",
    help="Skillwarden: a governance gateway for AI agents that use Agent Skills.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # rich tracebacks print locals, which may hold secrets
    add_completion=False,
)


@app.callback(
    epilog="Example: skillwarden publish sample_skills/code-review && skillwarden serve",
)
def _root() -> None:
    """Skillwarden: a governance gateway for AI agents that use Agent Skills."""


config_app = typer.Typer(help="Validate configuration files.", no_args_is_help=True)
app.add_typer(skills_app, name="skills")
app.add_typer(config_app, name="config")
app.add_typer(hook_app, name="hook")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="skillwarden.yaml (default: $SKILLWARDEN_CONFIG)."),
]
DataDirOpt = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default ./.skillwarden).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@app.command(
    epilog="Example: skillwarden publish sample_skills/code-review --publisher alice",
)
def publish(
    path: Annotated[Path, typer.Argument(help="A skill folder, its SKILL.md, or a zip/tar.gz.")],
    publisher: Annotated[str, typer.Option(help="Recorded as the version's publisher.")] = "cli",
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Validate a skill and publish it to the registry (nothing is stored when it is invalid)."""
    if not path.exists():
        fail(f"no such file or directory: {path}")
    source = path.parent if path.is_file() and path.name.lower() == "skill.md" else path
    settings = load_cli_settings(config, data_dir_override(data_dir))
    run(_publish(settings, source, publisher, as_json))


async def _publish(settings: Settings, source: Path, publisher: str, as_json: bool) -> None:
    async with opened_skill_store(settings) as store:
        try:
            result = await publish_skill(store, source, publisher=publisher)
        except SkillInvalid as exc:
            if as_json:
                problems = [p.as_dict() for p in exc.problems]
                print_json({"status": "invalid", "problems": problems})
            else:
                title = f"{source}: {len(exc.problems)} problem(s); nothing was stored"
                print_problems(title, exc.problems)
            raise typer.Exit(1) from None
    if result.status == "published" and settings.state_url != "memory":
        await _notify_replicas(settings, result.version.name, result.version.version)
    if as_json:
        print_json(publish_result_view(result))
        return
    v = result.version
    console.print(f"[bold]{result.status}[/] {v.ref}  {v.digest}")
    if result.status == "unchanged":
        console.print("  same digest as the stored version: nothing changed")
    if result.added_tools:
        console.print("  added tools: " + ", ".join(result.added_tools))
    for warning in result.warnings:
        console.print(f"  [yellow]warning:[/] {warning}")


async def _notify_replicas(settings: Settings, name: str, version: str) -> None:
    # Running replicas reload at once instead of at their next periodic reload.
    state = settings.state
    notifier = open_notifier(state.url, state.key_prefix, timeout_s=state.timeout_s)
    try:
        if not await notifier.publish(RegistryEvent("published", name, version)):
            err_console.print(
                "warning: running replicas were not notified (Redis unreachable); they pick "
                "the change up within server.registry_reload_s"
            )
    finally:
        await notifier.aclose()


@config_app.command("check", epilog="Example: skillwarden config check skillwarden.yaml")
def config_check(
    file: Annotated[Path, typer.Argument(help="The skillwarden.yaml to validate.")],
    as_json: JsonOpt = False,
) -> None:
    """List every problem in a configuration file (exit 1), or summarise it (exit 0)."""
    if not file.is_file():
        fail(f"no such file: {file}")
    try:
        settings = load_settings(file)
    except ConfigInvalid as exc:
        if as_json:
            print_json({"ok": False, "problems": [p.as_dict() for p in exc.problems]})
        else:
            print_problems(f"{file}: {len(exc.problems)} problem(s)", exc.problems)
        raise typer.Exit(1) from None
    summary = {
        "ok": True,
        "storage": redact_url(settings.storage_url),
        "state": redact_url(settings.state_url),
        "providers": sorted(settings.providers),
        "routes": len(settings.routes),
        "skills": sorted(settings.skills),
        "consumers": sorted(settings.consumers),
    }
    if as_json:
        print_json(summary)
        return
    console.print(f"[green]ok[/] {file}")
    for key, value in summary.items():
        if key != "ok":
            shown = ", ".join(value) if isinstance(value, list) else value
            console.print(f"  {key}: {shown or '-'}")


app.command(
    "serve",
    epilog="Example: skillwarden serve --config skillwarden.yaml --port 8080",
)(serve_command)
app.command(
    "demo",
    epilog="Example: skillwarden demo --skill code-review   (no provider key needed)",
)(demo_command)


def _add_audit(root: typer.Typer) -> None:
    # The audit sub-app is built in another issue; register it when its module exists.
    if importlib.util.find_spec("gateway.cli_audit") is not None:
        module = importlib.import_module("gateway.cli_audit")
        root.add_typer(module.audit_app, name="audit")


_add_audit(app)


def main() -> None:
    """Console-script entry point."""
    app()
