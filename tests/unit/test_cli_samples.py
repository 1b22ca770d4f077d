"""The sample skills: published by the CLI without warnings, covering every rule form, with
working scripts."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from gateway.bootstrap import SAMPLES_ROOT, sample_skill_dirs
from gateway.cli import app

SAMPLES = ["code-review", "data-analysis", "issue-triage", "pdf-processing"]
# PRODUCT.md §7: every rule form must appear in at least one sample's allowed-tools.
RULE_FORMS = {
    "Tool": r"^(Read|Grep|Glob)$",
    "Bash(x:*)": r"^Bash\([^ ]+( [^ ]+)?:\*\)$",
    "Bash(x y *)": r"^Bash\([^ :]+ [^ ]+ \*\)$",
    "Read(./..)": r"^Read\(\./",
    "Edit(//abs/**) or Edit(/docs/**)": r"^Edit\(//?[^/.]",
    "WebFetch(domain:*.x)": r"^WebFetch\(domain:\*\.",
    "mcp__server": r"^mcp__[a-z0-9-]+$",
    "mcp__server__tool": r"^mcp__[a-z0-9-]+__[a-z_*]+$",
    "Agent(X)": r"^Agent\(\w+\)$",
    "Skill(x)": r"^Skill\([a-z-]+\)$",
    "${CLAUDE_SKILL_DIR}": r"\$\{CLAUDE_SKILL_DIR\}",
    "Read(~/...)": r"^Read\(~/",
    "Read(//...)": r"^Read\(//",
}


def published(tmp_path: Path) -> list[dict[str, object]]:
    runner = CliRunner()
    results = []
    for name in SAMPLES:
        args = ["publish", str(SAMPLES_ROOT / name), "--data-dir", str(tmp_path), "--json"]
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output
        results.append(orjson.loads(out.output))
    return results


def test_samples_are_the_four_folders() -> None:
    assert [p.name for p in sample_skill_dirs(SAMPLES_ROOT)] == SAMPLES


def test_samples_publish_cleanly_and_cover_every_rule_form(tmp_path: Path) -> None:
    results = published(tmp_path)
    assert all(r["warnings"] == [] for r in results), results
    entries = [tool for r in results for tool in r["added_tools"]]  # type: ignore[attr-defined]
    missing = [f for f, rx in RULE_FORMS.items() if not any(re.search(rx, e) for e in entries)]
    assert missing == [], (missing, entries)


def test_pdf_script_extracts_text_under_out(tmp_path: Path) -> None:
    content = zlib.compress(b"BT /F1 12 Tf 72 712 Td (Hello \\(PDF\\) world) Tj ET")
    pdf = b"%%PDF-1.4\n1 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content)
    pdf += content + b"\nendstream\nendobj\ntrailer\n<< >>\n%%EOF\n"
    (tmp_path / "doc.pdf").write_bytes(pdf)
    script = SAMPLES_ROOT / "pdf-processing" / "scripts" / "extract_text.py"
    run = subprocess.run(
        [sys.executable, str(script), "doc.pdf", "--out", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "doc.txt").read_text() == "Hello (PDF) world"


@pytest.mark.parametrize("as_json", [True, False])
def test_analyze_script_profiles_csv(tmp_path: Path, as_json: bool) -> None:
    (tmp_path / "d.csv").write_text("city,pop,founded\nA,10,1900-01-01\nB,,1850-05-02\nC,2.5,\n")
    script = SAMPLES_ROOT / "data-analysis" / "scripts" / "analyze.py"
    args = [sys.executable, str(script), str(tmp_path / "d.csv")] + (["--json"] if as_json else [])
    run = subprocess.run(args, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    if as_json:
        report = orjson.loads(run.stdout)
        assert report["rows"] == 3
        assert report["columns"]["pop"] == {
            "type": "number",
            "missing": 1,
            "distinct": 2,
            "min": 2.5,
            "max": 10.0,
            "mean": 6.25,
            "median": 6.25,
        }
        assert report["columns"]["founded"]["type"] == "date"
        assert report["columns"]["city"]["type"] == "text"
    else:
        assert "3 rows" in run.stdout
