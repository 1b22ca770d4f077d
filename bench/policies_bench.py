"""Decision-engine benchmark: decisions/s and p50/p99, uncached and cached, 10 vs 10,000 skills.

Run: ``.venv/bin/python -m bench.policies_bench`` (about 10-20 s). Each skill version has the
same 20 rules under its own subject, so it gets its own enforcer; a decision first looks the
enforcer up (LRU by subject), then decides. "Uncached" = every call has a command/path never
seen before by that enforcer (the decision cache misses); "cached" = the same calls repeated.
Targets (issue 3): Bash uncached p99 <= 100 us, cached p99 <= 5 us, same at 10,000 as at 10.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from collections.abc import Callable

from policies.enforcer import PolicyEngine
from policies.paths import Anchors
from policies.rules import parse_rule, policy_line, split_allowed_tools

RULES = (
    "Bash(git status *) Bash(git log *) Bash(git diff *) Bash(git show *) Bash(grep:*) "
    "Bash(npm run test *) Bash(npm run lint) Bash(ls:*) Bash(cat:*) Bash(wc:*) "
    "Bash(python scripts/check.py *) Read(./src/**) Read(./docs/**) Edit(./out/**) "
    "Grep Glob WebFetch(domain:*.example.com) mcp__github__get_* Agent(Explore) Skill(deploy *)"
)
BASH = (
    "git status --short -- src/{n}",
    "git log --oneline -n {n} | grep fix",
    "npm run test -- --grep case{n} 2>&1",
    "ls -la src/{n} && cat docs/{n}.md | wc -l",
    "python scripts/check.py --id {n} > out/report{n}.txt",
    'git diff HEAD~{n} -- src && git show HEAD:src/a{n}.py | grep -n "def "',
)
OTHER: tuple[tuple[str, Callable[[int], dict[str, object]]], ...] = (
    ("Read", lambda n: {"file_path": f"/work/proj/src/pkg/m{n}.py"}),
    ("Edit", lambda n: {"file_path": f"/work/proj/out/r{n}.md", "old_string": "a"}),
    ("WebFetch", lambda n: {"url": f"https://api{n}.example.com/v1", "prompt": "p"}),
    ("mcp__github__get_issue", lambda n: {"number": n}),
)
ANCHORS = Anchors(cwd="/work/proj", project_dir="/work/proj", home="/home/u", skill_dir="/s/d")
Call = tuple[str, str, dict[str, object]]
WORKING_SET = 500


def _lines(subject: str) -> list[tuple[str, str, str, str]]:
    return [policy_line(subject, parse_rule(e)) for e in split_allowed_tools(RULES)]


def _calls(skills: int, count: int, bash: bool, seed: int) -> list[Call]:
    rng = random.Random(seed)
    calls: list[Call] = []
    for n in range(count):
        subject = f"skill-{rng.randrange(skills)}@1.0.0"
        if bash:
            calls.append((subject, "Bash", {"command": rng.choice(BASH).format(n=n)}))
        else:
            tool, make = rng.choice(OTHER)
            calls.append((subject, tool, make(n)))
    return calls


def _measure(engine: PolicyEngine, calls: list[Call]) -> list[float]:
    timings: list[float] = []
    clock = time.perf_counter_ns
    for subject, tool, tool_input in calls:
        start = clock()
        engine.enforcer(subject, ()).decide(tool, tool_input, ANCHORS)
        timings.append((clock() - start) / 1000)
    return timings


def _report(label: str, timings: list[float]) -> None:
    ordered = sorted(timings)
    p50 = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    rate = len(ordered) / (sum(ordered) / 1e6)
    print(f"  {label:<28} {rate:>11,.0f} decisions/s   p50 {p50:7.1f} us   p99 {p99:7.1f} us")


def run(skill_counts: tuple[int, ...] = (10, 10_000), count: int = 20_000) -> None:
    """Print the figures for each number of loaded skills."""
    version = sys.version.split()[0]
    print(f"policies bench: 20-rule skill, {count:,} decisions per row, Python {version}")
    for skills in skill_counts:
        engine = PolicyEngine(max_skills=max(skills, 16))
        start = time.perf_counter()
        for index in range(skills):
            subject = f"skill-{index}@1.0.0"
            engine.enforcer(subject, _lines(subject))
        load = time.perf_counter() - start
        gc.collect()
        gc.freeze()  # long-lived enforcers leave the GC's young generations, as in a server
        print(f"{skills:,} skills loaded ({load:.2f} s to build their enforcers)")
        for bash in (True, False):
            kind = "Bash" if bash else "Read/Edit/WebFetch/MCP"
            calls = _calls(skills, count, bash, seed=skills)
            _report(f"{kind} uncached", _measure(engine, calls))
            working_set = calls[:WORKING_SET]  # fits every per-skill decision cache
            _measure(engine, working_set)
            _report(f"{kind} cached", _measure(engine, working_set * (count // WORKING_SET)))


if __name__ == "__main__":
    run()
