"""The budget stage in the gateway bench (issue 5 "Speed"): three gateways side by side.

    .venv/bin/python -m bench.gateway_bench --only budgets      (about 80 s)

One upstream, three gateway processes with the same sample skills: no budget, and
code-review budgeted (serve.BENCH_BUDGETS, never refusing, so reserve and settle run on every
request) with in-process counters and with Redis counters. The chat 1KB load at 1 and 32
connections; for each concurrency, ROUNDS rounds of none, memory, redis back to back (each
round starting with the next variant), so the three of a round share the machine's noise.
Redis round trips per request: INFO commandstats `evalsha` delta over each measured run (one
reserve + one settle = 2; another client's EVALSHA on the shared server would show up too),
and every command on the gateway's connections under MONITOR in a separate short run
(round_trips()).
The keys live under a random prefix and are deleted at the end.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.load import Load, closed_loop, measure, wait_ready
from bench.procs import Child

REDIS_URL = "redis://127.0.0.1:6379/0"
VARIANTS = ("none", "memory", "redis")
CONCURRENCY = (1, 32)
BOUNDS = {1: (1_500, 4.0), 32: (4_000, 4.0)}  # (max requests, max seconds) per measured run
ROUNDS = 4  # deltas are medians over rounds: one pair of runs drifts by 10-15% here
ROUND_TRIP_REQUESTS = 300  # per concurrency, under MONITOR
_MONITOR_LINE = re.compile(r'[\d.]+ \[\d+ (?P<client>\S+)\] "(?P<cmd>[^"]+)"(?P<rest>.*)')
CPU_TARGET_US = 150.0  # issue 5: Redis reserve + settle add <= 150 us of gateway CPU
ROUND_TRIPS_TARGET = 2.0  # one for reserve, one for settle


def _commandstats(client: redis.Redis) -> dict[str, float]:
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): float(v["calls"]) for name, v in stats.items()}
    # Only EVALSHA: commandstats also counts the commands a script runs, so their sum is not
    # round trips (round_trips() counts those under MONITOR).
    return {"evalsha": calls.get("evalsha", 0.0)}


async def round_trips(tmp: Path, url: str, load: Load, conc: int, prefix: str) -> dict[str, Any]:
    """Commands the gateway sends to Redis per request, under MONITOR (not during the CPU runs:
    MONITOR slows the server). The gateway's connections are those whose commands name our key
    prefix; every command on them counts (a PING or NOSCRIPT reload would too), nested script
    commands do not: that is one round trip per command."""
    # redis-cli, not redis-py: its MONITOR reader drops the connection on a read timeout.
    log = tmp / f"monitor-{conc}.log"
    with open(log, "wb") as out:
        mon = subprocess.Popen(["redis-cli", "-u", REDIS_URL, "monitor"], stdout=out)
        try:
            await asyncio.sleep(0.5)  # MONITOR is on before the first request
            run = await closed_loop(url, load, conc, ROUND_TRIP_REQUESTS, 10.0)
            await asyncio.sleep(0.5)  # the last settle has reached Redis
        finally:
            mon.terminate()
            mon.wait(5.0)
    # `<time> [<db> <ip:port>|lua] "cmd" ...`; a script's own commands come as [<db> lua].
    lines = [_MONITOR_LINE.match(ln) for ln in log.read_text(errors="replace").splitlines()]
    ours = [(m["client"], m["cmd"], m["rest"]) for m in lines if m and m["client"] != "lua"]
    ports = {client for client, _, rest in ours if prefix in rest}
    cmds: dict[str, int] = {}
    for client, cmd, _ in ours:
        if client in ports:
            cmds[cmd.lower()] = cmds.get(cmd.lower(), 0) + 1
    sent = run.count + sum(run.errors.values())
    return {
        "requests": sent,
        "connections": len(ports),
        "round_trips_per_req": sum(cmds.values()) / sent if sent else None,
        "commands": cmds,
    }


def _delete_keys(client: redis.Redis, prefix: str) -> int:
    # SCAN, not KEYS: the server is shared; bounded by the (small) number of bench keys.
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    return int(client.delete(*keys)) if keys else 0


def start_gateways(tmp: Path, up_url: str, prefix: str) -> dict[str, Child]:
    states: dict[str, Any] = {
        "memory": "memory",
        "redis": {"url": REDIS_URL, "key_prefix": prefix},
    }
    children: dict[str, Child] = {}
    try:
        for name in VARIANTS:
            args = ["-m", "bench.serve", "gateway", str(tmp / f"data-{name}"), up_url]
            if name in states:
                args.append(json.dumps(states[name]))
            children[name] = Child(f"gateway-{name}", args, tmp)
        for child in children.values():
            child.expect("PORT", "KEY")
    except BaseException:
        for child in children.values():
            child.stop()
        raise
    return children


async def bench_budgets(
    tmp: Path, up_url: str, load: Load, report: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Rows for every (concurrency, round, variant), each passed to `report` as measured.
    The x-api-key of `load` is replaced by each gateway's own agent key."""
    prefix = f"swbench:{secrets.token_hex(6)}:"
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5.0)
    gateways = start_gateways(tmp, up_url, prefix)
    rows: list[dict[str, Any]] = []
    trips: dict[str, dict[str, Any]] = {}  # JSON keys
    try:
        urls = {n: f"http://127.0.0.1:{c.values['PORT']}" for n, c in gateways.items()}
        for name, child in gateways.items():
            await wait_ready(urls[name] + "/healthz", child)
        for conc in CONCURRENCY:
            for rnd in range(1, ROUNDS + 1):
                # Each round starts with another variant: no variant always runs last.
                names = list(gateways)
                names = names[rnd % len(names) :] + names[: rnd % len(names)]
                for name, child in ((n, gateways[n]) for n in names):
                    keyed = Load(
                        load.path, load.body, {**load.headers, "x-api-key": child.values["KEY"]}
                    )
                    probe = (lambda: _commandstats(client)) if name == "redis" else None
                    row = await measure(child, urls[name], keyed, conc, BOUNDS[conc], probe)
                    row = {
                        "server": f"gw-{name}",
                        "body": "chat 1KB",
                        "concurrency": conc,
                        "round": rnd,
                        "variant": name,
                        **row,
                    }
                    rows.append(row)
                    report(row)
            keyed = Load(
                load.path, load.body, {**load.headers, "x-api-key": gateways["redis"].values["KEY"]}
            )
            trips[str(conc)] = await round_trips(tmp, urls["redis"], keyed, conc, prefix)
    finally:
        for child in gateways.values():
            child.stop()
        deleted = _delete_keys(client, prefix)
        client.close()
    return {
        "prefix": prefix,
        "keys_deleted": deleted,
        "rows": rows,
        "round_trips": trips,
        **summary(rows, trips),
    }


def summary(rows: list[dict[str, Any]], trips: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per concurrency: the deltas of each variant's CPU/req against no budget, computed per
    round (each compares runs close in time), their median and spread (min..max over
    rounds), and Redis round trips per request."""
    out: dict[str, Any] = {"deltas": [], "targets": []}
    for conc in CONCURRENCY:
        cpu: dict[tuple[str, int], float] = {
            (r["variant"], r["round"]): r["cpu_us_per_req"] or float("nan")
            for r in rows
            if r["concurrency"] == conc
        }
        stats = [r["per_request"] for r in rows if r["concurrency"] == conc and "per_request" in r]
        for variant in ("memory", "redis"):
            d = [cpu[(variant, n)] - cpu[("none", n)] for n in range(1, ROUNDS + 1)]
            out["deltas"].append(
                {
                    "concurrency": conc,
                    "delta": f"{variant} - none",
                    "cpu_us_per_req": statistics.median(d),
                    "spread": [min(d), max(d)],
                }
            )
        redis_delta = out["deltas"][-1]["cpu_us_per_req"]
        evalsha = statistics.mean(t["evalsha"] for t in stats)
        rt = trips[str(conc)]["round_trips_per_req"] or float("nan")
        out["targets"] += [
            {
                "target": f"gateway CPU/req redis - none, chat 1KB, {conc} conn (us)",
                "value": redis_delta,
                "limit": CPU_TARGET_US,
                "ok": redis_delta <= CPU_TARGET_US,
            },
            {
                "target": f"Redis round trips/req, {conc} conn (evalsha/req {evalsha:.2f})",
                "value": rt,
                "limit": ROUND_TRIPS_TARGET,
                "ok": rt <= ROUND_TRIPS_TARGET,
            },
        ]
    return out


def print_summary(result: dict[str, Any]) -> None:
    print("\nBudget stage, gateway CPU/req deltas (median of rounds; min..max over rounds):")
    for d in result["deltas"]:
        lo, hi = d["spread"]
        print(
            f"  {d['delta']:<14} {d['concurrency']:>3} conn  {d['cpu_us_per_req']:>+7.1f} us"
            f"  ({lo:+.1f}..{hi:+.1f})"
        )
    for conc, t in result["round_trips"].items():
        print(
            f"  Redis round trips per request, {conc} conn (MONITOR, {t['requests']} requests,"
            f" {t['connections']} connections): {t['round_trips_per_req']:.2f} {t['commands']}"
        )
    print(f"  Redis keys under {result['prefix']} deleted: {result['keys_deleted']}")
