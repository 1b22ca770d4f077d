"""prometheus-client collectors, labelled by skill (and provider, decision where it applies).

Each app owns one GatewayMetrics with its own CollectorRegistry (several apps in one test
process must not collide); GET /metrics serves it (gateway/api/metrics.py). The app's lifespan
attaches the runtime, so finish() and the check API, which only hold the runtime, find it.

Label values are bounded: a skill label is a registry skill name only once bind_skill resolved
it, else "-" (never the raw X-Skill header); a tool label is one the skill's rules or
always_allowed name, else "other"; providers, endpoints and outcomes come from fixed sets.

BUDGET_STORE_UNAVAILABLE predates this and stays on the process-wide default registry: the
budget stage has no runtime at hand and tests read it from REGISTRY. Each app's registry
re-exports it, so /metrics shows it too (the process total).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.pipeline.context import RequestContext
    from gateway.runtime import Runtime

__all__ = [
    "BUDGET_STORE_UNAVAILABLE",
    "NO_SKILL",
    "OTHER_TOOL",
    "GatewayMetrics",
    "attempt_outcome",
    "record_check",
    "record_request",
]

log = logging.getLogger("skillwarden.metrics")

# outcome: refused (fail closed, 503), admitted (operator opted into fail-open, unmetered),
# unsettled (settle/release could not reach the store; the reservation stays charged).
BUDGET_STORE_UNAVAILABLE = Counter(
    "skillwarden_budget_store_unavailable",
    "Budget checks that could not reach the counter store, by skill and outcome",
    ["skill", "outcome"],
)

NO_SKILL = "-"  # unknown, unauthenticated or unbound requests
OTHER_TOOL = "other"  # a tool the skill's rules do not name
# Refusals take milliseconds, whole streamed turns minutes: cover both ends.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_ERRORS = frozenset(
    ("connect", "protocol", "circuit_open", "upstream")
    + tuple(f"timeout:{p}" for p in ("connect", "first_byte", "idle", "total"))
)
_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_TOOL_CACHE_MAX = 1024

# id(runtime) -> its app's metrics, while the app's lifespan has it attached. A plain dict:
# Runtime is a slots dataclass (no weakrefs, not hashable); attached() removes the entry.
_ATTACHED: dict[int, GatewayMetrics] = {}


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "none"


def attempt_outcome(status: int | None, error: str | None) -> str:
    """ok | http_4xx | http_429 | http_5xx | connect | timeout:<phase> | protocol |
    circuit_open | error: a fixed set, whatever the attempt recorded."""
    if status is not None and (error is None or error.startswith("http_")):
        if status < 400:
            return "ok"
        return "http_429" if status == 429 else f"http_{status // 100}xx"
    return error if error in _ERRORS else "error"


class GatewayMetrics:
    """The collectors of one app. Children are cached per label tuple: labels() validates and
    locks on every call, a dict hit does not (see docs/metrics.md for the measured cost)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "skillwarden_requests",
            "Requests by skill, endpoint, decision (allow|deny|partial) and status class",
            ["skill", "endpoint", "decision", "status_class"],
            registry=registry,
        )
        self.duration = Histogram(
            "skillwarden_request_duration_seconds",
            "Time from request start to its audit record (streams: until the stream closed)",
            ["skill", "endpoint"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.tool_calls = Counter(
            "skillwarden_tool_calls",
            "Tool calls decided, in model responses (source=response) or by the check API",
            ["skill", "tool", "tool_decision", "source"],
            registry=registry,
        )
        self.tools_removed = Counter(
            "skillwarden_tools_removed",
            "Tools removed from requests because the skill does not allow them",
            ["skill"],
            registry=registry,
        )
        self.tokens = Counter(
            "skillwarden_tokens",
            "Tokens charged (as in the audit records), by skill, provider and direction",
            ["skill", "provider", "direction"],
            registry=registry,
        )
        self.attempts = Counter(
            "skillwarden_upstream_attempts",
            "Upstream attempts by provider and outcome",
            ["provider", "outcome"],
            registry=registry,
        )
        self.cost = Counter(
            "skillwarden_cost_usd",
            "Cost in USD from configured prices, by skill and provider",
            ["skill", "provider"],
            registry=registry,
        )
        registry.register(_BreakerCollector(self))
        registry.register(_ReExport(BUDGET_STORE_UNAVAILABLE))
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(_ReExport(standard))
        self.runtime: Runtime | None = None
        self._children: dict[tuple[Any, ...], Any] = {}
        self._tools: dict[str, frozenset[str]] = {}

    @contextmanager
    def attached(self, rt: Runtime) -> Iterator[None]:
        """While open, record_request(rt, ...) lands here and the breaker gauge reads rt."""
        _ATTACHED[id(rt)] = self
        self.runtime = rt
        try:
            yield
        finally:
            _ATTACHED.pop(id(rt), None)
            self.runtime = None

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _tool_label(self, ctx: RequestContext, tool: str) -> str:
        resolved = ctx.resolved
        if resolved is None:
            return OTHER_TOOL
        named = self._tools.get(resolved.ref)
        if named is None:  # once per skill version: the tools its rules and the operator name
            if len(self._tools) >= _TOOL_CACHE_MAX:
                self._tools.clear()
            rules = (line[1] for line in resolved.enforcer.lines)
            named = self._tools[resolved.ref] = frozenset(rules) | resolved.policy.always_allowed
        return tool if tool in named else OTHER_TOOL

    def observe(self, ctx: RequestContext, decision: str, source: str) -> None:
        """One finished request or check; its labels as its audit record says."""
        skill = ctx.skill if ctx.resolved is not None and ctx.skill else NO_SKILL
        endpoint = ctx.endpoint
        self._child(self.requests, skill, endpoint, decision, status_class(ctx.status)).inc()
        self._child(self.duration, skill, endpoint).observe(ctx.latency_ms / 1000.0)
        for verdict in ctx.tool_calls:
            tool = self._tool_label(ctx, verdict.name)
            self._child(self.tool_calls, skill, tool, verdict.decision, source).inc()
        if ctx.tools_removed:
            self._child(self.tools_removed, skill).inc(len(ctx.tools_removed))
        provider = ctx.provider or "-"
        if ctx.input_tokens:
            self._child(self.tokens, skill, provider, "input").inc(ctx.input_tokens)
        if ctx.output_tokens:
            self._child(self.tokens, skill, provider, "output").inc(ctx.output_tokens)
        if ctx.cost_usd:
            self._child(self.cost, skill, provider).inc(ctx.cost_usd)
        for a in ctx.attempts:
            self._child(self.attempts, a.provider, attempt_outcome(a.status, a.error)).inc()


def record_request(rt: Runtime, ctx: RequestContext) -> None:
    """finish()'s call: never raises (metrics must not change the client's answer)."""
    metrics = _ATTACHED.get(id(rt))
    if metrics is None:  # a runtime no app attached (unit tests, tools)
        return
    try:
        metrics.observe(ctx, ctx.decision(), "response")
    except Exception:
        log.exception("metrics of request %s were not recorded", ctx.request_id)


def record_check(rt: Runtime, ctx: RequestContext, decision: str) -> None:
    """The check API's call, with the decision of its audit record."""
    metrics = _ATTACHED.get(id(rt))
    if metrics is None:
        return
    try:
        metrics.observe(ctx, decision, "check")
    except Exception:
        log.exception("metrics of tool-call check %s were not recorded", ctx.request_id)


class _BreakerCollector(Collector):
    """Breaker state per provider, read at scrape time (no per-request cost)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return ()  # computed at scrape time; nothing to check for name clashes up front

    def collect(self) -> Iterable[Metric]:
        rt = self._metrics.runtime
        state = GaugeMetricFamily(
            "skillwarden_breaker_state",
            "Circuit breaker per provider: 0 closed, 1 half-open, 2 open",
            labels=["provider"],
        )
        opened = CounterMetricFamily(
            "skillwarden_breaker_opened",
            "Times the provider's circuit opened since start-up",
            labels=["provider"],
        )
        if rt is not None:
            snapshots = rt.breakers.snapshot()
            # Configured providers that saw no traffic yet are closed: show them as 0.
            for name in dict.fromkeys([*rt.settings.providers, *snapshots]):
                snap = snapshots.get(name)
                state.add_metric([name], _BREAKER_VALUE[snap.state] if snap else 0.0)
                opened.add_metric([name], float(snap.opened_total) if snap else 0.0)
        return (state, opened)


class _ReExport(Collector):
    """Serve a collector registered elsewhere (the default registry) from this registry too."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        return list(self._source.collect())
