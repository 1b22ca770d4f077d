"""gateway/ui_render.py: hostile values render inert, sections are present, denial rows."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

from gateway.state.audit import AuditRecord
from gateway.state.counters import Limit, LimitUsage
from gateway.ui_render import (
    Budget,
    Denial,
    SkillRow,
    denials_of,
    duration,
    error_page,
    index_page,
    skill_page,
)
from gateway.upstream.breaker import BreakerSnapshot

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
EVIL = "<script>alert('x')</script> \"q\" & <img src=x onerror=alert(1)>"


class Tags(HTMLParser):
    """Every start tag and attribute the browser would see."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Tags:
    parser = Tags()
    parser.feed(page)
    parser.close()
    return parser


def assert_inert(page: str) -> None:
    tags = parse(page)
    assert "script" not in tags.tags and "img" not in tags.tags
    assert not [a for a, _ in tags.attrs if a.startswith("on")]
    assert "<script" not in page.lower()
    assert EVIL not in page  # only ever escaped
    assert html.escape(EVIL, quote=True) in page
    # Attribute values stay inside their quotes: no stray `"` inside an attribute.
    assert all(v is None or '"' not in v for _, v in tags.attrs)


def summary(name: str = "code-review", **kw: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "version": "1",
        "digest": "sha256:" + "ab" * 32,
        "description": "Reviews code.",
        "publisher": "alice",
        "published_at": NOW.isoformat(),
        "allowed_tools": ["Read", "Bash(git status)"],
        "warnings": [],
    }
    return base | kw


def detail(**kw: Any) -> dict[str, Any]:
    s = summary(**kw)
    manifest = {
        "name": s["name"],
        "description": s["description"],
        "license": "Apache-2.0",
        "compatibility": None,
        "metadata": {},
        "allowed_tools": s["allowed_tools"],
        "body": "",
    }
    return {
        "name": s["name"],
        "version": s["version"],
        "digest": s["digest"],
        "publisher": s["publisher"],
        "published_at": s["published_at"],
        "manifest": manifest,
        "policy": [[f"{s['name']}@1", "Read", "tool", ""], ["x@1", "Bash", "bash", "git status"]],
        "warnings": s["warnings"],
        "files": ["SKILL.md"],
        "ref": f"{s['name']}@1",
        "versions": [
            {"version": "1", "digest": s["digest"], "publisher": "alice", "published_at": "t"}
        ],
    }


def budget(used: int = 59, limit: int = 10_000) -> Budget:
    lim = Limit("code-review", "day", "tokens", limit)
    return Budget("day", "tokens", limit, LimitUsage(lim, used, 3 * 3600 + 120))


def test_index_escapes_every_value() -> None:
    row = SkillRow(
        summary(description=EVIL, allowed_tools=[EVIL, "Read"], warnings=[EVIL], version=EVIL),
        [budget()],
        3,
    )
    breaker = BreakerSnapshot(EVIL, "open", 5, 12.0, 1)
    page = index_page([row], [breaker], now=NOW, unbound_denials=2)
    assert_inert(page)


def test_skill_page_escapes_description_rules_and_reasons() -> None:
    d = detail(description=EVIL, allowed_tools=[EVIL], warnings=[EVIL])
    d["policy"] = [["x@1", EVIL, "bash", EVIL]]
    d["manifest"]["compatibility"] = EVIL
    denial = Denial(NOW, "tool_check", EVIL, EVIL, EVIL, EVIL)
    page = skill_page(d, [budget()], [denial], now=NOW)
    assert_inert(page)
    assert page.count(html.escape(EVIL, quote=True)) >= 8


def test_error_page_escapes() -> None:
    assert_inert(error_page(404, EVIL))


def test_index_layout() -> None:
    rows = [
        SkillRow(summary(), [budget()], 0),
        SkillRow(summary("issue-triage", allowed_tools=None, warnings=["w1", "w2"]), [], 4, True),
    ]
    breakers = [BreakerSnapshot("anthropic", "closed", 0, 0.0, 0)]
    page = index_page(rows, breakers, now=NOW)
    text = "".join(parse(page).text)
    assert '<a href="skills/code-review">code-review</a>' in page  # relative link
    assert '<a href="skills/issue-triage">' in page
    assert "abababababab" in page and "ab" * 32 in page  # short digest, full in the title
    assert "Bash(git status)" in text and "only the always-allowed tools" in text
    assert "59 / 10,000" in text and "resets in 3 h 2 min" in text
    assert "no skill budget" in text
    assert "4+" in text  # capped count
    assert "Providers" in text and "anthropic" in text and "closed" in text
    assert "<form" not in page and "<script" not in page


def test_skill_page_layout() -> None:
    denial = Denial(NOW, "tool_check", "bot", "Bash", "code-review@1 allowed-tools", "no rule")
    page = skill_page(detail(), [budget(used=10_000)], [denial], now=NOW)
    text = "".join(parse(page).text)
    assert '<a href="../">' in page
    for section in ("Allowed tools", "Compiled rules", "Warnings", "Budgets (skill scope)",
                    "Versions", "Recent denials (1)"):  # fmt: skip
        assert f"<h2>{html.escape(section)}</h2>" in page, section
    assert "git status" in text and "Apache-2.0" in text
    assert "2026-05-01 12:00:00" in text and "bot" in text and "no rule" in text
    assert '<span class="over">10,000</span>' in page  # budget used up is highlighted


def test_skill_page_empty_sections() -> None:
    d = detail(allowed_tools=None)
    d["policy"] = []
    text = "".join(parse(skill_page(d, [], [], now=NOW)).text)
    assert "No rule" in text and "No skill-wide budget" in text and "No denial recorded" in text


def test_budget_unavailable() -> None:
    b = Budget("hour", "requests", 10, None)
    page = index_page([SkillRow(summary(), [b], 0)], [], now=NOW)
    assert "unavailable" in page
    assert "unavailable" in skill_page(detail(), [b], [], now=NOW)


def record(**kw: Any) -> AuditRecord:
    base: dict[str, Any] = {"request_id": "r", "endpoint": "/v1/messages", "decision": "deny"}
    return AuditRecord(**(base | kw))


def test_denials_of() -> None:
    refused = record(
        ts=NOW - timedelta(minutes=3),
        status=429,
        consumer="bot",
        reasons=["budget_exceeded: too much [rule: budget:code-review:skill:day:tokens]"],
    )
    redacted = record(
        ts=NOW - timedelta(minutes=1),
        decision="partial",
        status=200,
        tool_calls=[
            {"name": "Bash", "input_digest": "d", "decision": "deny", "rule": "r1"},
            {"name": "Read", "input_digest": "d", "decision": "allow", "rule": "Read"},
            {"name": "Edit", "input_digest": "d", "decision": "deny", "rule": "r2"},
        ],
    )
    filtered_only = record(decision="partial", status=200, tools_removed=["WebFetch"])
    rows = denials_of([refused, redacted, filtered_only])
    assert [(r.tool, r.rule) for r in rows] == [
        ("Bash", "r1"),
        ("Edit", "r2"),
        (None, "budget:code-review:skill:day:tokens"),
    ]
    assert rows[2].consumer == "bot" and rows[2].reason.startswith("budget_exceeded")
    assert rows[0].reason == "(no reason recorded)"


def test_duration() -> None:
    assert [duration(s) for s in (-1, 45, 61, 3 * 3600 + 300, 2 * 86400 + 7200)] == [
        "0 s",
        "45 s",
        "1 min",
        "3 h 5 min",
        "2 d 2 h",
    ]


def test_no_unescaped_ampersand() -> None:
    page = skill_page(detail(description="a & b"), [], [], now=NOW)
    assert "a &amp; b" in page
    assert not re.search(r"&(?![a-z]+;|#\d+;)", page)
