"""`skillwarden serve`: validate the config, bootstrap once, then run the app under uvicorn."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from gateway.app import create_app
from gateway.bootstrap import bootstrap
from gateway.cli_common import (
    CliError,
    console,
    load_cli_settings,
    opened_skill_store,
    redact_url,
    run,
)
from gateway.server import serve_options
from gateway.settings import Settings
from gateway.state.keys import open_key_store

__all__ = ["serve_command"]


def serve_command(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="skillwarden.yaml (default: $SKILLWARDEN_CONFIG)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (default ./.skillwarden).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default 1).")] = None,
) -> None:
    """Run the gateway. On first start: sample skills published, admin and agent keys printed."""
    if config is not None and not config.is_file():
        raise typer.BadParameter(f"no such file: {config}", param_hint="--config")
    overrides: dict[str, Any] = {}
    server = {"host": host, "port": port, "workers": workers}
    if any(v is not None for v in server.values()):
        overrides["server"] = {k: v for k, v in server.items() if v is not None}
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    settings = load_cli_settings(config, overrides)
    run(_bootstrap_once(settings))
    s = settings.server
    console.print(
        f"Skillwarden on http://{s.host}:{s.port} (storage {redact_url(settings.storage_url)})"
    )
    if s.workers == 1:
        app = create_app(settings, run_bootstrap=False)
        uvicorn.run(app, **serve_options(settings))
        return
    # Several processes need an import string; they rebuild Settings from the same sources.
    if config is not None:
        os.environ["SKILLWARDEN_CONFIG"] = str(config.absolute())
    os.environ["SKILLWARDEN_DATA_DIR"] = str(settings.data_dir.absolute())
    os.environ["SKILLWARDEN_STORAGE"] = settings.storage_url
    uvicorn.run(
        "gateway.app:create_app_from_env",
        factory=True,
        workers=s.workers,
        **serve_options(settings),  # the same protocol class in every worker
    )


async def _bootstrap_once(settings: Settings) -> None:
    """Done before uvicorn starts, so DB errors are one friendly line and workers never race."""
    async with opened_skill_store(settings) as skills:
        keys = open_key_store(settings.storage_url)
        try:
            await keys.open()
        except Exception as exc:
            raise CliError(f"cannot open the key store: {exc}") from None
        try:
            await bootstrap(settings, skills, keys, typer.echo)
        finally:
            await keys.close()
