"""RequestContext: everything one request accumulates on its way through the pipeline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gateway.pipeline.budget import Hold
    from gateway.pipeline.wire import RequestView, Wire
    from gateway.runtime import ResolvedSkill
    from gateway.upstream.client import ProviderTarget

ClientFormat = Literal["anthropic", "openai"]
BoundBy = Literal["skill_tool_call", "header", "no_skill_baseline", "none"]


@dataclass(slots=True)
class ToolCallVerdict:
    name: str
    input_digest: str
    decision: Literal["allow", "deny"]
    rule: str | None
    reason: str

    def as_audit(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_digest": self.input_digest,
            "decision": self.decision,
            "rule": self.rule,
        }


@dataclass(slots=True)
class UpstreamAttempt:
    provider: str
    status: int | None
    error: str | None
    latency_ms: float

    def as_audit(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "status": self.status,
            "error": self.error,
            "latency_ms": round(self.latency_ms, 2),
        }


@dataclass(slots=True)
class RequestContext:
    """Carried by every stage; stages read what earlier ones set and add their own part."""

    request_id: str
    endpoint: str
    client_format: ClientFormat
    headers: dict[str, str]  # lower-cased names, as received
    raw_body: bytes
    started: float = field(default_factory=time.perf_counter)
    body: dict[str, Any] | None = None
    consumer: str | None = None
    consumer_skills: tuple[str, ...] | None = None  # None: every skill
    skill: str | None = None
    skill_version: str | None = None
    skill_digest: str | None = None
    bound_by: BoundBy = "none"
    session_id: str | None = None
    cwd: str | None = None
    model: str | None = None
    stream: bool = False
    reasons: list[str] = field(default_factory=list)
    tools_offered: list[str] = field(default_factory=list)
    tools_removed: list[str] = field(default_factory=list)
    tool_calls: list[ToolCallVerdict] = field(default_factory=list)
    attempts: list[UpstreamAttempt] = field(default_factory=list)
    provider: str | None = None
    status: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    finished: bool = False
    # Set by the edge and the stages (see gateway/pipeline/run.py for the order).
    skill_header: tuple[str, ...] = ()  # every X-Skill value received (repeats are refused)
    query: str = ""  # the client's query string, forwarded as is (Claude Code: beta=true)
    wire: Wire | None = None  # the client format's parse/edit/render functions
    request: RequestView | None = None  # the parsed body's canonical view
    resolved: ResolvedSkill | None = None  # the bound skill version, its enforcer and policy
    forward_body: bytes | None = None  # what goes upstream: raw_body unless policy edited it
    strip_usage: bool = False  # the gateway asked for OpenAI's usage chunk: drop it again
    target: ProviderTarget | None = None
    error_code: str | None = None  # the Skillwarden code of a refusal, for logs and metrics
    budget: Hold | None = None  # what reserve_budget admitted; finish settles it (or forward
    # releases it when no provider answered)
    upstream_model: str | None = None  # the model the provider was asked for (after aliases)
    cost_usd: float | None = None  # from configured prices, set by finish

    @property
    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def decision(self) -> Literal["allow", "deny", "partial"]:
        """deny if refused outright, partial if some tool call or tool was removed, else allow."""
        if self.status >= 400:
            return "deny"
        if self.tools_removed or any(v.decision == "deny" for v in self.tool_calls):
            return "partial"
        return "allow"
