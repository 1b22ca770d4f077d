"""GET /ui/ and /ui/skills/{name} on the real app under uvicorn, sample skills published:
admin key by Basic auth or headers, security headers, skills and tools, a denied check on the
skill page, a configured budget's use after a request, 404 for anything not a skill name."""

from __future__ import annotations

import asyncio
import base64
import html
from html.parser import HTMLParser

import httpx
import pytest

from tests.e2e.conftest import create_key
from tests.e2e.proxy_support import AGENT_KEY, MSG, MakeStack, Stack, make_stack, upstreams
from tests.e2e.upstreams import anthropic_message, json_reply

pytestmark = pytest.mark.e2e
__all__ = ["make_stack", "upstreams"]

BUDGET = {"code-review": {"budgets": [{"window": "day", "tokens": 10_000}]}}
CSP = "default-src 'none'; style-src 'unsafe-inline'"


class Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text_of(page: str) -> str:
    parser = Text()
    parser.feed(page)
    assert "script" not in parser.tags and "form" not in parser.tags
    return "".join(parser.parts)


def basic(key: str, user: str = "reviewer") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{key}".encode()).decode()
    return {"authorization": f"Basic {token}"}


@pytest.fixture
async def gw(make_stack: MakeStack) -> tuple[Stack, str, str]:
    """A gateway with a day token budget on code-review; its admin and (stored) agent keys."""
    stack = make_stack(skills=BUDGET)
    # create_key runs its own event loop: in a thread, beside this test's loop.
    admin = await asyncio.to_thread(create_key, stack.settings, "admin", "reviewer-alice")
    agent = await asyncio.to_thread(create_key, stack.settings, "agent", "bot")
    return stack, admin, agent


async def get(stack: Stack, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url, timeout=10) as client:
        return await client.get(path, headers=headers or {})


def assert_secure(answer: httpx.Response) -> None:
    h = answer.headers
    assert h["content-security-policy"].startswith(CSP)
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["cache-control"] == "no-store"
    assert h["content-type"] == "text/html; charset=utf-8"


async def test_auth(gw: tuple[Stack, str, str]) -> None:
    stack, admin, agent = gw
    for headers in (None, basic("sk-sw-not-a-key"), basic(AGENT_KEY), {"x-api-key": "nope"}):
        answer = await get(stack, "/ui/", headers)
        assert answer.status_code == 401, headers  # AGENT_KEY is a config key: no admin key
        assert answer.headers["www-authenticate"].startswith('Basic realm="skillwarden"')
        assert_secure(answer)
    for headers in (basic(agent), {"x-api-key": agent}, {"authorization": f"Bearer {agent}"}):
        answer = await get(stack, "/ui/", headers)
        assert answer.status_code == 403, headers
        assert "www-authenticate" not in answer.headers
        assert_secure(answer)
    for headers in (
        basic(admin),
        basic(admin, user=""),
        {"authorization": f"Basic {base64.b64encode(f'{admin}:'.encode()).decode()}"},
        {"x-api-key": admin},
        {"authorization": f"Bearer {admin}"},
    ):
        answer = await get(stack, "/ui/", headers)
        assert answer.status_code == 200, headers
        assert_secure(answer)
    assert (await get(stack, "/ui/skills/code-review", basic(agent))).status_code == 403
    assert (await get(stack, "/ui/skills/code-review")).status_code == 401


async def test_index_lists_sample_skills_and_tools(gw: tuple[Stack, str, str]) -> None:
    stack, admin, _ = gw
    answer = await get(stack, "/ui/", basic(admin))
    text = text_of(answer.text)
    for name in ("code-review", "data-analysis", "issue-triage", "pdf-processing"):
        assert f'<a href="skills/{name}">{name}</a>' in answer.text
    for tool in ("Bash(git diff:*)", "Bash(git status)", "mcp__linear", "Agent(Explore)",
                 "Bash(python3 ${CLAUDE_SKILL_DIR}/scripts/extract_text.py *)"):  # fmt: skip
        assert tool in text, tool
    assert "0 / 10,000" in text  # the configured budget, unused yet
    assert "anthropic" in text and "openai" in text and "closed" in text  # provider circuits


async def test_denied_check_appears_on_skill_page(gw: tuple[Stack, str, str]) -> None:
    stack, admin, _ = gw
    call = {"skill": "code-review", "tool": "Bash", "input": {"command": "curl http://x/<b>&"}}
    async with httpx.AsyncClient(base_url=stack.url, headers={"x-api-key": AGENT_KEY}) as c:
        verdict = (await c.post("/v1/tool-calls/check", json=call)).json()
        unknown = {**call, "skill": "no-such-skill"}
        assert (await c.post("/v1/tool-calls/check", json=unknown)).status_code == 403
    assert verdict["decision"] == "deny"
    page = await get(stack, "/ui/skills/code-review", basic(admin))
    assert page.status_code == 200
    assert_secure(page)
    text = text_of(page.text)
    assert "Recent denials (1)" in text
    assert "e2e-agent" in text and "tool_check" in text
    assert verdict["rule"] in text and verdict["reason"] in text
    assert html.escape(verdict["reason"], quote=True) in page.text
    assert "<b>" not in page.text  # the command, if the reason quotes it, stays inert
    for section in ("Allowed tools", "Compiled rules", "Versions", "Budgets (skill scope)"):
        assert section in text
    assert "git diff *" in text  # a compiled rule pattern
    index = (await get(stack, "/ui/", basic(admin))).text
    row = next(r for r in index.split("<tr>") if 'href="skills/code-review"' in r)
    assert '<span class="deny">1</span>' in row  # the 24 h denial count
    assert "1 denied request(s) in the last 24 h had no published skill" in index
    assert "no-such-skill" not in index  # counted, not listed


async def test_budget_use_after_a_request(gw: tuple[Stack, str, str]) -> None:
    stack, admin, _ = gw
    stack.ant.enqueue(json_reply(anthropic_message("ok", input_tokens=42, output_tokens=17)))
    async with stack.anthropic() as sdk:
        await sdk.messages.create(model="m", max_tokens=5, messages=MSG)
    index = text_of((await get(stack, "/ui/", basic(admin))).text)
    assert "tokens / day: 59 / 10,000" in index
    page = text_of((await get(stack, "/ui/skills/code-review", basic(admin))).text)
    assert "9,941" in page  # remaining
    assert "Recent denials (0)" in page and "No denial recorded." in page


@pytest.mark.parametrize(
    "path",
    [
        "/ui/skills/no-such-skill",
        "/ui/skills/Code-Review",
        "/ui/skills/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/ui/skills/code-review@1",
        "/ui/skills/" + "a" * 65,
        "/ui/skills/..%2Fadmin",
        "/ui/skills/code-review/extra",
    ],
)
async def test_unknown_skill_is_404(gw: tuple[Stack, str, str], path: str) -> None:
    stack, admin, _ = gw
    answer = await get(stack, path, basic(admin))
    assert answer.status_code == 404, answer.text
    assert "<script" not in answer.text and "alert" not in answer.text


async def test_read_only_and_redirect(gw: tuple[Stack, str, str]) -> None:
    stack, admin, _ = gw
    async with httpx.AsyncClient(base_url=stack.url, headers=basic(admin)) as client:
        assert (await client.post("/ui/")).status_code == 405
        assert (await client.post("/ui/skills/code-review")).status_code == 405
        moved = await client.get("/ui")
    assert moved.status_code == 308 and moved.headers["location"] == "ui/"
