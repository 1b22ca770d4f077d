"""The skillwarden CLI through typer's CliRunner, against the embedded SQLite default."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from gateway.cli import app

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_skills"
runner = CliRunner()


def sw(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args], env=env or {"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_publish_twice_then_unchanged(data: Path) -> None:
    code, out = sw("publish", SAMPLES / "code-review", "--data-dir", data)
    assert code == 0, out
    assert out.startswith("published code-review@1  sha256:")
    assert "added tools: Read, Grep, Glob, Bash(git diff:*)" in out
    code, out = sw("publish", SAMPLES / "code-review", "--data-dir", data)
    assert code == 0 and out.startswith("unchanged code-review@1"), out


def test_publish_json_and_show_json_has_compiled_rules(data: Path) -> None:
    code, out = sw("publish", SAMPLES / "data-analysis", "--data-dir", data, "--json")
    result = orjson.loads(out)
    assert code == 0 and result["status"] == "published" and result["ref"] == "data-analysis@1"
    code, out = sw("skills", "show", "data-analysis", "--data-dir", data, "--json")
    shown = orjson.loads(out)
    assert code == 0
    assert shown["digest"] == result["digest"]
    assert [v["version"] for v in shown["versions"]] == ["1"]
    assert shown["manifest"]["allowed_tools"][3] == "Bash(head:*)"
    assert ["data-analysis@1", "WebFetch", "domain", "*.data.gov"] in shown["policy"]
    assert all(len(line) == 4 for line in shown["policy"])
    code, out = sw("skills", "show", "data-analysis@1", "--data-dir", data)
    assert code == 0 and "compiled rules" in out and "data-analysis@1" in out


def test_invalid_folder_lists_every_problem_and_stores_nothing(tmp_path: Path, data: Path) -> None:
    folder = tmp_path / "Bad_Skill"
    folder.mkdir()
    (folder / "SKILL.md").write_text(
        "---\nname: Bad--Skill\ndescription: ''\nallowed-tools: Bash(git:* Read\nfoo: 1\n---\n",
        encoding="utf-8",
    )
    code, out = sw("publish", folder, "--data-dir", data)
    assert code == 1
    assert "nothing was stored" in out
    for text in ("foo", "description", "must be lowercase", "consecutive hyphens", "unbalanced"):
        assert text in out, (text, out)
    code, out = sw("publish", folder, "--data-dir", data, "--json")
    problems = orjson.loads(out)["problems"]
    assert code == 1 and len(problems) >= 5
    assert {"field", "rule", "value"} == set(problems[0])
    code, out = sw("skills", "list", "--data-dir", data, "--json")
    assert code == 0 and orjson.loads(out) == []


def test_publish_archive_and_skill_md_path(tmp_path: Path, data: Path) -> None:
    archive = shutil.make_archive(str(tmp_path / "pdf"), "gztar", SAMPLES, "pdf-processing")
    code, out = sw("publish", archive, "--data-dir", data)
    assert code == 0 and out.startswith("published pdf-processing@1"), out
    code, out = sw("publish", SAMPLES / "pdf-processing" / "SKILL.md", "--data-dir", data)
    assert code == 0 and out.startswith("unchanged pdf-processing@1"), out


def test_skills_list(data: Path) -> None:
    for name in ("issue-triage", "code-review"):
        assert sw("publish", SAMPLES / name, "--data-dir", data)[0] == 0
    code, out = sw("skills", "list", "--data-dir", data, "--json")
    assert code == 0 and [s["name"] for s in orjson.loads(out)] == ["code-review", "issue-triage"]
    code, out = sw("skills", "list", "--data-dir", data)
    assert code == 0 and "2 skill(s)" in out and "issue-triage" in out


@pytest.mark.parametrize(
    "args",
    [
        ("publish", "no/such/folder"),
        ("skills", "show", "nope"),
        ("config", "check", "no-such.yaml"),
        ("skills", "list", "--config", "no-such.yaml"),
    ],
)
def test_friendly_one_line_errors(data: Path, args: tuple[str, ...]) -> None:
    code, out = sw(*args, "--data-dir", data) if args[0] != "config" else sw(*args)
    assert code in (1, 2), out
    assert "Traceback" not in out
    assert out.count("\n") <= 4, out


def test_unreachable_database(data: Path) -> None:
    env = {"COLUMNS": "200", "SKILLWARDEN_STORAGE": "sqlite:////proc/nope/x.db"}
    code, out = sw("skills", "list", "--data-dir", data, env=env)
    assert code == 1 and out.startswith("error: cannot open storage sqlite:////proc/nope/x.db")


def test_config_check_example_ok() -> None:
    env = {"COLUMNS": "200", "ANTHROPIC_API_KEY": "sk-ant-test"}
    code, out = sw("config", "check", REPO / "skillwarden.example.yaml", env=env)
    assert code == 0 and out.startswith("ok "), out
    code, out = sw("config", "check", REPO / "skillwarden.example.yaml", "--json", env=env)
    assert code == 0 and orjson.loads(out)["providers"] == ["anthropic", "local-vllm"]


def test_config_check_accepts_state_mapping_and_budget_keys(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "state: {url: 'redis://:pw@r:6379/0', key_prefix: 'sw-a:', timeout_s: 0.5, "
        "fail_open: true}\n"
        "skills:\n  '*': {default_max_tokens: 2048, budgets: [{window: day, tokens: 10}]}\n",
        encoding="utf-8",
    )
    code, out = sw("config", "check", good, "--json")
    assert code == 0 and orjson.loads(out)["state"] == "redis://:***@r:6379/0", out
    bad = tmp_path / "bad.yaml"
    bad.write_text("state: {url: memory, fail_open: maybe}\n", encoding="utf-8")
    code, out = sw("config", "check", bad, "--json")
    assert code == 1 and [p["field"] for p in orjson.loads(out)["problems"]] == ["state.fail_open"]


def test_config_check_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "server: {port: -1}\nstate: nope\nguard: {deny: ['(']}\nextra: 1\n", encoding="utf-8"
    )
    code, out = sw("config", "check", bad, "--json")
    problems = orjson.loads(out)["problems"]
    assert code == 1
    assert {p["field"] for p in problems} == {"server.port", "state", "guard.deny.0", "extra"}
    code, out = sw("config", "check", bad)
    assert code == 1 and "4 problem(s)" in out and "invalid regular expression" in out


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("publish",),
        ("serve",),
        ("skills", "list"),
        ("skills", "show"),
        ("config", "check"),
    ],
)
def test_help_shows_an_example(command: tuple[str, ...]) -> None:
    code, out = sw(*command, "--help")
    assert code == 0 and "Example: skillwarden" in out, out


def test_config_check_explains_patterns_re2_cannot_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "guard: {deny: ['(?i)ignore(?! this)', '(a+)+$']}\naudit: {redact: ['(\\d)\\1']}\n",
        encoding="utf-8",
    )
    code, out = sw("config", "check", bad, "--json")
    problems = orjson.loads(out)["problems"]
    assert code == 1
    assert [(p["field"], p["value"]) for p in problems] == [
        ("guard.deny.0", "(?i)ignore(?! this)"),
        ("audit.redact.0", "(\\d)\\1"),
    ]
    assert problems[0]["rule"].startswith("lookahead is not supported (patterns run on RE2")
    assert problems[1]["rule"].startswith("backreferences are not supported")
    code, out = sw("config", "check", bad)
    assert code == 1 and "2 problem(s)" in out and "lookahead is not supported" in out
