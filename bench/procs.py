"""Child server processes for the gateway bench, and what /proc says about them.

Every child is started with ``python -m <module> ...``, prints ``PORT <n>`` (the gateway also
``KEY <agent key>``) and is stopped with SIGTERM, then SIGKILL after a bounded wait.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["Child", "cpu_seconds", "rss_mib"]

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # fields 14 and 15 of proc(5)


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS over the process's life) in MiB, from /proc/<pid>/status."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0]) / 1024.0
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


class Child:
    """One server process; its stdout lines are read by a thread into a queue."""

    def __init__(self, name: str, args: list[str], log_dir: Path) -> None:
        self.name = name
        self._log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=Path(__file__).resolve().parents[1],
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.values: dict[str, str] = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # ends when the child exits
            self._lines.put(raw.decode(errors="replace").strip())

    def expect(self, *names: str, timeout: float = 60.0) -> dict[str, str]:
        """Wait for `NAME value` lines for every name; raise if the child dies or is slow."""
        deadline = time.monotonic() + timeout
        while not all(n in self.values for n in names):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} did not start (see {self._log.name})")
            try:
                line = self._lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            name, _, value = line.partition(" ")
            self.values[name] = value
        return self.values

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        self._log.close()
