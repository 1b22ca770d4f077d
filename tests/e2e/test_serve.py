"""`skillwarden serve` as a real process: first start bootstraps and prints keys once."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

SKILLWARDEN = Path(sys.executable).with_name("skillwarden")
# No inherited SKILLWARDEN_* variables: the test decides the whole configuration.
CLEAN_ENV = {"PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "LC_ALL": "C.UTF-8"}
KEY = re.compile(r"sk-sw-[A-Za-z0-9_-]{43}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(data_dir: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run serve until the with-block ends (SIGINT); its terminal output goes to `log`."""
    port = free_port()
    cmd = [str(SKILLWARDEN), "serve", "--data-dir", str(data_dir), "--port", str(port)]
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=CLEAN_ENV)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_first_start_bootstraps_and_prints_keys_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "first.log"
    with serve(data, log) as (url, proc):
        health = httpx.get(f"{url}/healthz").json()
        assert health["skills"] == 4
        assert httpx.head(f"{url}/").status_code == 200
    first = log.read_text()
    assert proc.returncode == 0, first
    keys = KEY.findall(first)
    assert len(keys) == 2, first  # one admin key and one agent key, printed once
    assert "no LLM provider key is configured" in first
    assert (data / "skillwarden.db").is_file()

    log = tmp_path / "second.log"
    with serve(data, log) as (url, proc):
        admin = keys[0]
        listed = httpx.get(f"{url}/admin/skills", headers={"x-api-key": admin})
        assert listed.status_code == 200
        assert [s["version"] for s in listed.json()["skills"]] == ["1"] * 4  # unchanged
        agent = httpx.get(f"{url}/admin/skills", headers={"x-api-key": keys[1]})
        assert agent.status_code == 403
    second = log.read_text()
    assert KEY.findall(second) == [], second
    assert data.joinpath("skillwarden.db").read_bytes().count(keys[0].encode()) == 0


def test_invalid_config_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server: {port: nope}\nstate: memcached\n", encoding="utf-8")
    result = subprocess.run(
        [str(SKILLWARDEN), "serve", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        timeout=60,
    )
    assert result.returncode == 1
    assert "server.port" in result.stdout and "state" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = {**CLEAN_ENV, "SKILLWARDEN_STORAGE": "sqlite:////proc/no/such/dir/x.db"}
    result = subprocess.run(
        [str(SKILLWARDEN), "serve", "--data-dir", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
