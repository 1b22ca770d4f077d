"""HTML of the read-only review page (/ui/): data in, a string out; no I/O, no template engine.

Every value that reaches the page goes through `_e` (html.escape, quotes included): skill
descriptions, rules, audit reasons and consumer names come from publishers and clients. Links
are relative (`skills/<name>`, `../`) so the page also works behind a path-prefix proxy.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from gateway.state.audit import AuditRecord, format_ts
from gateway.state.counters import LimitUsage
from gateway.upstream.breaker import BreakerSnapshot

__all__ = [
    "Budget",
    "Denial",
    "SkillRow",
    "denials_of",
    "duration",
    "error_page",
    "index_page",
    "skill_page",
]

_RULE_SUFFIX = re.compile(r"\[rule: ([^\]]*)\]\s*$")  # how refusals name their rule in reasons
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem;color:#1b1f24;background:#fff}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}code{font:12.5px ui-monospace,monospace;background:#f3f5f7;
padding:0 .2rem;border-radius:3px;overflow-wrap:anywhere}ul.tools{margin:0;padding-left:1rem}
.muted{color:#59636e}.deny{color:#b42318;font-weight:600}.ok{color:#1a7f37}
.open{color:#b42318;font-weight:600}.half_open{color:#9a6700;font-weight:600}
.over{color:#b42318;font-weight:600}nav{margin-bottom:1rem}
"""


@dataclass(frozen=True, slots=True)
class Budget:
    """One skill-scope limit and its use now; usage None when the counter store is down."""

    window: str
    kind: str
    limit: int
    usage: LimitUsage | None


@dataclass(frozen=True, slots=True)
class SkillRow:
    """A line of the skill list: skill_summary_view() plus what the gateway knows at run time."""

    summary: Mapping[str, Any]
    budgets: Sequence[Budget]
    denials_24h: int
    capped: bool = False  # the 24 h scan hit its cap: the count is a lower bound


@dataclass(frozen=True, slots=True)
class Denial:
    """One denied tool call, or one refused request (tool None)."""

    ts: datetime
    kind: str
    consumer: str | None
    tool: str | None
    rule: str | None
    reason: str


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def duration(seconds: float) -> str:
    """A short human duration: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def denials_of(records: Iterable[AuditRecord]) -> list[Denial]:
    """Denial rows, newest first: each denied tool call of a record, else the refused record.

    A `partial` record whose only change was removing offered tools (mode filter, every turn
    of a Claude Code session) is not a denial: it would drown the ones a reviewer looks for.
    """
    rows: list[Denial] = []
    for r in records:
        reason = "; ".join(r.reasons) or "(no reason recorded)"
        denied = [c for c in r.tool_calls if c.get("decision") == "deny"]
        for call in denied:
            name, rule = call.get("name"), call.get("rule")
            rows.append(Denial(r.ts, r.kind, r.consumer, name, rule, reason))
        if not denied and r.decision == "deny":
            found = next((m for m in map(_RULE_SUFFIX.search, r.reasons) if m), None)
            rows.append(Denial(r.ts, r.kind, r.consumer, None, found and found.group(1), reason))
    rows.sort(key=lambda d: d.ts, reverse=True)
    return rows


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """Cells are HTML already (callers escape); headers are escaped here."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>\n" for row in rows)
    if not body:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"


def _tools(entries: Sequence[str] | None) -> str:
    if not entries:  # None (key absent) and [] both grant only the always_allowed tools
        return '<span class="muted">none (only the always-allowed tools)</span>'
    items = "".join(f"<li><code>{_e(t)}</code></li>" for t in entries)
    return f'<ul class="tools">{items}</ul>'


def _usage(b: Budget) -> str:
    what = f"{_e(b.kind)} / {_e(b.window)}"
    if b.usage is None:
        return f'{what}: <span class="muted">unavailable (counter store down)</span>'
    u = b.usage
    css = ' class="over"' if u.used >= b.limit else ""
    used = f"<span{css}>{u.used:,}</span> / {b.limit:,}"
    reset = f'<span class="muted">resets in {_e(duration(u.reset_s))}</span>'
    return f"{what}: {used}, {reset}"


_BUDGET_HEADERS = ("kind", "window", "used", "limit", "remaining", "resets in")


def _budget_row(b: Budget) -> tuple[str, ...]:
    u = b.usage
    if u is None:
        gone = '<span class="muted">unavailable (counter store down)</span>'
        return (_e(b.kind), _e(b.window), gone, f"{b.limit:,}", "", "")
    used = f'<span class="over">{u.used:,}</span>' if u.used >= b.limit else f"{u.used:,}"
    left = f"{u.remaining:,}"
    return (_e(b.kind), _e(b.window), used, f"{b.limit:,}", left, _e(duration(u.reset_s)))


def _budgets_cell(budgets: Sequence[Budget]) -> str:
    if not budgets:
        return '<span class="muted">no skill budget</span>'
    return "<br>".join(_usage(b) for b in budgets)


def _breakers(snapshots: Sequence[BreakerSnapshot]) -> str:
    rows = [
        (
            f"<code>{_e(s.provider)}</code>",
            f'<span class="{_e(s.state)}">{_e(s.state.replace("_", "-"))}</span>',
            _e(s.consecutive_failures),
            _e(duration(s.retry_in_s)) if s.state == "open" else "",
            _e(s.opened_total),
        )
        for s in snapshots
    ]
    headers = ("provider", "circuit", "consecutive failures", "probe in", "opened since start")
    return _table(headers, rows, "No provider is configured.")


def index_page(
    skills: Sequence[SkillRow],
    breakers: Sequence[BreakerSnapshot],
    *,
    now: datetime,
    unbound_denials: int = 0,
) -> str:
    """GET /ui/: every skill (latest version), its tools, budget use and 24 h denials."""
    rows = []
    for s in skills:
        v = s.summary
        count = f"{s.denials_24h:,}{'+' if s.capped else ''}"
        rows.append(
            (
                f'<a href="skills/{_e(quote(v["name"], safe=""))}">{_e(v["name"])}</a>',
                _e(v["version"]),
                f'<code title="{_e(v["digest"])}">{_e(_short(v["digest"]))}</code>',
                _tools(v["allowed_tools"]),
                _e(len(v["warnings"])),
                _budgets_cell(s.budgets),
                f'<span class="deny">{count}</span>' if s.denials_24h else "0",
            )
        )
    headers = ("skill", "version", "digest", "allowed tools", "warnings", "budget (skill)",
               "denials 24 h")  # fmt: skip
    unbound = ""
    if unbound_denials:
        unbound = (
            f'<p class="muted">{unbound_denials:,} denied request(s) in the last 24 h had no '
            "published skill (unknown skill name, bad key, no X-Skill): see GET /admin/audit.</p>"
        )
    body = (
        "<h1>Skillwarden: skills</h1>\n"
        f'<p class="muted">Read-only. {_e(format_ts(now)[:19])} UTC. Budget use is the skill-'
        "wide counter in its current window; per-consumer budgets are not shown.</p>\n"
        f"{_table(headers, rows, 'No skill is published.')}\n{unbound}"
        f"<h2>Providers</h2>\n{_breakers(breakers)}\n"
        '<p class="muted">Circuit states are this process\'s own (per replica, per worker).</p>'
    )
    return _page("Skillwarden: skills", body)


def skill_page(
    detail: Mapping[str, Any],
    budgets: Sequence[Budget],
    denials: Sequence[Denial],
    *,
    now: datetime,
) -> str:
    """GET /ui/skills/<name>: skill_detail_view() of the latest version, budgets, denials."""
    m = detail["manifest"]
    facts = [
        ("latest version", _e(detail["version"])),
        ("digest", f"<code>{_e(detail['digest'])}</code>"),
        ("publisher", _e(detail["publisher"])),
        ("published", _e(detail["published_at"])),
        ("license", _e(m.get("license") or "-")),
        ("compatibility", _e(m.get("compatibility") or "-")),
    ]
    versions = [
        (_e(v["version"]), f"<code>{_e(v['digest'])}</code>", _e(v["publisher"]),
         _e(v["published_at"]))
        for v in reversed(detail["versions"])
    ]  # fmt: skip
    rules = [(f"<code>{_e(t)}</code>", _e(kind), f"<code>{_e(p)}</code>" if p else "")
             for _sub, t, kind, p in detail["policy"]]  # fmt: skip
    warnings = "".join(f"<li>{_e(w)}</li>" for w in detail["warnings"])
    budget_rows = [_budget_row(b) for b in budgets]
    denial_rows = [
        (_e(format_ts(d.ts)[:19].replace("T", " ")), _e(d.consumer or "-"), _e(d.kind),
         f"<code>{_e(d.tool)}</code>" if d.tool else '<span class="muted">request</span>',
         f"<code>{_e(d.rule)}</code>" if d.rule else "", _e(d.reason))
        for d in denials
    ]  # fmt: skip
    name = detail["name"]
    warned = f"<ul>{warnings}</ul>" if warnings else '<p class="muted">None.</p>'
    denial_headers = ("time", "consumer", "kind", "tool", "rule", "reason")
    sections = [
        '<nav><a href="../">&larr; all skills</a></nav>',
        f"<h1>{_e(name)}</h1>\n<p>{_e(m.get('description'))}</p>",
        "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>",
        f"<h2>Allowed tools</h2>\n{_tools(m.get('allowed_tools'))}",
        "<h2>Compiled rules</h2>",
        _table(("tool", "matcher", "pattern"), rules, "No rule: only the always-allowed tools."),
        f"<h2>Warnings</h2>\n{warned}",
        "<h2>Budgets (skill scope)</h2>",
        _table(_BUDGET_HEADERS, budget_rows, "No skill-wide budget is configured."),
        "<h2>Versions</h2>",
        _table(("version", "digest", "publisher", "published"), versions, "None."),
        f"<h2>Recent denials ({len(denials)})</h2>",
        f'<p class="muted">Newest first, times UTC; generated {_e(format_ts(now)[:19])}.</p>',
        _table(denial_headers, denial_rows, "No denial recorded."),
    ]
    return _page(f"Skillwarden: {name}", "\n".join(sections))


def error_page(status: int, message: str) -> str:
    body = f"<h1>{status}</h1>\n<p>{_e(message)}</p>\n"
    return _page(f"Skillwarden: {status}", body)


def _short(digest: str) -> str:
    """sha256:0123456789ab... -> the first 12 hex digits (enough to tell versions apart)."""
    return digest.partition(":")[2][:12] or digest[:12]
