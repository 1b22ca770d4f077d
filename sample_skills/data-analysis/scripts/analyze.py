#!/usr/bin/env python3
"""Profile a CSV file: per column the inferred type, missing and distinct values, and statistics."""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from datetime import date
from pathlib import Path

MISSING = {"", "na", "n/a", "null", "none", "nan", "-"}


def _kind(value: str) -> str:
    for kind, parse in (("integer", int), ("number", float), ("date", date.fromisoformat)):
        try:
            parse(value)
        except ValueError:
            continue
        return kind
    return "text"


def profile_column(values: list[str]) -> dict[str, object]:
    present = [v.strip() for v in values if v.strip().lower() not in MISSING]
    kinds = {_kind(v) for v in present}
    if kinds == {"integer"}:
        kind = "integer"
    elif kinds and kinds <= {"integer", "number"}:
        kind = "number"
    else:
        kind = kinds.pop() if len(kinds) == 1 else "text"
    result: dict[str, object] = {
        "type": kind,
        "missing": len(values) - len(present),
        "distinct": len(set(present)),
    }
    if kind in ("integer", "number"):
        numbers = [float(v) for v in present]
        result.update(
            min=min(numbers),
            max=max(numbers),
            mean=round(statistics.fmean(numbers), 6),
            median=statistics.median(numbers),
        )
    return result


def profile(path: Path) -> dict[str, object]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return {"file": str(path), "rows": 0, "columns": {}}
    header, body = rows[0], rows[1:]
    columns = {
        name or f"column_{i + 1}": profile_column([r[i] if i < len(r) else "" for r in body])
        for i, name in enumerate(header)
    }
    return {"file": str(path), "rows": len(body), "columns": columns}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("csv", type=Path)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if not args.csv.is_file():
        print(f"{args.csv}: no such file", file=sys.stderr)
        return 1
    report = profile(args.csv)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['file']}: {report['rows']} rows")
    columns = report["columns"]
    assert isinstance(columns, dict)
    for name, stats in columns.items():
        details = ", ".join(f"{k}={v}" for k, v in stats.items())
        print(f"  {name}: {details}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
