"""gateway/server.py: `skillwarden serve` and the e2e harness run the same uvicorn stack."""

from __future__ import annotations

from pathlib import Path

from gateway.server import GatewayHttpProtocol, serve_options, server_config
from gateway.settings import load_settings


def test_serve_options(tmp_path: Path) -> None:
    settings = load_settings(None, {}, {"data_dir": str(tmp_path)})
    options = serve_options(settings)
    assert options["http"] is GatewayHttpProtocol and options["loop"] == "uvloop"
    assert options["proxy_headers"] is False  # X-Forwarded-* trusted only when configured
    assert options["server_header"] is False
    trusted = load_settings(
        None, {}, {"data_dir": str(tmp_path), "server": {"proxy_headers": True}}
    )
    assert serve_options(trusted)["proxy_headers"] is True


def test_harness_config_matches_serve() -> None:
    config = server_config(object())
    assert config.http is GatewayHttpProtocol and config.loop == "uvloop"
    assert config.proxy_headers is False
