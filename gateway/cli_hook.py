"""`skillwarden hook claude-code`: the Claude Code PreToolUse command hook (see gateway/hook.py).

Defaults come from the environment through typer's envvar support (SKILLWARDEN_URL,
SKILLWARDEN_API_KEY, SKILLWARDEN_SKILL; CLAUDE_PROJECT_DIR and HOME, which Claude Code's
hook processes inherit). This module imports only typer, httpx and gateway.hook, so
`python -m gateway.cli_hook claude-code` starts fast and cannot be broken by the server code.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gateway.hook import HookConfig, deny_output, run_hook

__all__ = ["claude_code_hook", "hook_app"]

hook_app = typer.Typer(
    help="Agent-side hooks that ask the gateway before a tool runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@hook_app.callback()
def _hooks() -> None:
    """Agent-side hooks that ask the gateway before a tool runs."""
    # A callback keeps `claude-code` a subcommand when this module runs on its own.


@hook_app.command(
    "claude-code",
    epilog="Example (settings.json): skillwarden hook claude-code || exit 2   (follows the"
    " session's skill; add --skill code-review to check against one fixed skill)",
)
def claude_code_hook(
    gateway: Annotated[
        str | None,
        typer.Option("--gateway", envvar="SKILLWARDEN_URL", help="Gateway base URL."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", envvar="SKILLWARDEN_API_KEY", help="Agent API key (sk-sw-...)."),
    ] = None,
    skill: Annotated[
        str | None,
        typer.Option(
            "--skill",
            envvar="SKILLWARDEN_SKILL",
            help="A fixed skill (name or name@version); default: the skill the gateway bound"
            " on this Claude Code session's latest model request.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(min=0.1, max=600, help="Seconds per network step; keep Claude Code's higher."),
    ] = 10.0,
    project_dir: Annotated[
        str | None,
        typer.Option(envvar="CLAUDE_PROJECT_DIR", help="Anchor of /x rules (default: cwd)."),
    ] = None,
    skill_dir: Annotated[
        str | None, typer.Option(help="The skill's folder, for ${CLAUDE_SKILL_DIR} rules.")
    ] = None,
    home: Annotated[
        str | None, typer.Option(envvar="HOME", help="Anchor of ~/ rules and paths.")
    ] = None,
) -> None:
    """Read a PreToolUse event on stdin; deny in Claude Code's JSON form, or stay silent to allow.

    Fails closed: bad input, no configuration, an unreachable or failing gateway all deny.
    """
    config = HookConfig(gateway, key, skill, timeout, project_dir, skill_dir, home)
    try:
        raw = sys.stdin.buffer.read()
        result = run_hook(raw, config)
    except BaseException as exc:  # noqa: BLE001 - even Ctrl-C must not let the call through
        _emit(deny_output(f"Skillwarden hook failed ({type(exc).__name__}); denied") + "\n")
        return
    _emit(result.stdout)


def _emit(text: str) -> None:
    if not text:
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError:
        # Without stdout there is no JSON; exit 2 blocks the call on its own (stderr = reason).
        sys.stderr.write("Skillwarden hook could not write its answer; denied\n")
        raise typer.Exit(2) from None


if __name__ == "__main__":  # python -m gateway.cli_hook claude-code ...
    hook_app(prog_name="skillwarden hook")
