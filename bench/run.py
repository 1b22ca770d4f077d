"""`make bench`: run every benchmark under bench/ in turn and print their figures."""

from __future__ import annotations

import runpy
import sys

BENCHES = ["bench.policies_bench", "bench.budget_bench", "bench.gateway_bench"]


def main() -> None:
    selected = sys.argv[1:] or BENCHES
    for name in selected:
        print(f"\n== {name} ==", flush=True)
        runpy.run_module(name, run_name="__main__")


if __name__ == "__main__":
    main()
