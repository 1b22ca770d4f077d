"""Stage 5: token budgets and request-count limits, reserved before forwarding, settled after.

- Which limits: skills[name].budgets when that skill sets `budgets` (even to []), else
  skills["*"].budgets; plus consumers[consumer].budgets. A budget with scope "skill" is shared
  by every consumer of the skill; scope "consumer" and every consumer budget count per
  (consumer, skill). A budget with both tokens and requests is two limits.
- What is reserved: the input estimate (request body bytes / 4, see estimate_input_tokens)
  plus the output cap (max_tokens; OpenAI max_completion_tokens or max_tokens; when absent,
  the documented default cap), and one request.
- What is charged at settle: the provider's total (input + output + cache creation + cache
  read tokens), sanitised: negative -> 0, absurd -> clamped, absent -> the reservation.
  Every correction is a reason in ctx.reasons, so the audit record shows it.
- Store down: 503 with "budget store unavailable" (fail closed), or admitted unmetered when
  the operator opts into fail_open; both count in skillwarden_budget_store_unavailable_total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.errors import ErrorCode, GatewayError
from gateway.formats.canonical import Usage
from gateway.metrics import BUDGET_STORE_UNAVAILABLE
from gateway.pipeline.context import RequestContext
from gateway.settings import BudgetSettings, Settings
from gateway.state.counters import (
    Amounts,
    Counters,
    CountersUnavailable,
    Limit,
    Refusal,
    Reservation,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "STORE_DOWN_CODE",
    "Hold",
    "budget_headers",
    "estimate_input_tokens",
    "limits_for",
    "output_cap",
    "release_budget",
    "reserve_budget",
    "sanitize_usage",
    "settle_budget",
]

BYTES_PER_TOKEN = 4  # the usual rule of thumb; JSON overhead makes it an overestimate
MAX_INPUT_ESTIMATE = 1_000_000  # no context window is larger; bounds huge base64 bodies
MAX_OUTPUT_CAP = 1_000_000
DEFAULT_MAX_TOKENS = 4096  # reserved for an OpenAI request that states no output cap
HARD_CAP = 10_000_000  # no single request reports more tokens than this, per usage field
ABSURD_FACTOR = 4  # a charge above reserved * this is clamped and audited
STORE_DOWN_RETRY_S = 5
_OPENAI_CAPS = ("max_completion_tokens", "max_tokens")
# PRODUCT.md has no code for "the budget store is down": budget_unavailable is our addition
# (503, retryable; documented in docs/budgets-and-routing.md).
STORE_DOWN_CODE: ErrorCode = "budget_unavailable"


@dataclass(frozen=True, slots=True)
class Hold:
    """What reserve_budget admitted; keep it on the context (ctx.budget) for finish."""

    reservation: Reservation
    input_estimate: int
    max_output: int
    defaulted_output: bool  # no max_tokens in the request: DEFAULT cap was reserved

    @property
    def reserved(self) -> int:
        return self.reservation.tokens


def estimate_input_tokens(ctx: RequestContext) -> int:
    """ceil(request body bytes / 4), within [1, 1,000,000].

    The whole body (messages, system, tools, plus a little JSON around them) is measured as
    received: no re-serialisation on the hot path. It overestimates (JSON syntax, base64
    images count by size), which is the safe side for a reservation; settle corrects it.
    """
    size = len(ctx.raw_body)
    return max(1, min(MAX_INPUT_ESTIMATE, -(-size // BYTES_PER_TOKEN)))


def output_cap(ctx: RequestContext, default_max_tokens: int) -> tuple[int, bool]:
    """(tokens the response may produce, whether the default cap was used)."""
    body = ctx.body or {}
    # OpenAI: max_completion_tokens supersedes the deprecated max_tokens when both are sent.
    keys = ("max_tokens",) if ctx.client_format == "anthropic" else _OPENAI_CAPS
    for key in keys:
        value = body.get(key)
        if type(value) is int:
            return max(0, min(MAX_OUTPUT_CAP, value)), False
    return default_max_tokens, True


def _limits(
    skill: str, consumer: str | None, budget: BudgetSettings, per_consumer: bool
) -> list[Limit]:
    who = (consumer or "-") if per_consumer else None
    found = []
    if budget.tokens is not None:
        found.append(Limit(skill, budget.window, "tokens", budget.tokens, who))
    if budget.requests is not None:
        found.append(Limit(skill, budget.window, "requests", budget.requests, who))
    return found


def skill_budgets(settings: Settings, skill: str) -> list[BudgetSettings]:
    """skills[name].budgets when that key is set (even to []), else skills["*"].budgets."""
    own = settings.skills.get(skill)
    # Explicit `budgets: []` on a skill opts it out of the "*" default.
    if own is not None and "budgets" in own.model_fields_set:
        return own.budgets
    star = settings.skills.get("*")
    return star.budgets if star is not None else []


def skill_scope_limits(settings: Settings, skill: str) -> list[Limit]:
    """The limits a skill's consumers share (scope "skill"), e.g. for display."""
    limits: list[Limit] = []
    for budget in skill_budgets(settings, skill):
        if budget.scope == "skill":
            limits += _limits(skill, None, budget, False)
    return limits


def limits_for(ctx: RequestContext, settings: Settings) -> list[Limit]:
    """Every limit that applies to this request's (consumer, skill); [] when none or no skill."""
    skill = ctx.skill
    if skill is None:
        return []
    limits: list[Limit] = []
    for budget in skill_budgets(settings, skill):
        limits += _limits(skill, ctx.consumer, budget, budget.scope == "consumer")
    consumer = settings.consumers.get(ctx.consumer) if ctx.consumer is not None else None
    for budget in consumer.budgets if consumer is not None else ():
        limits += _limits(skill, ctx.consumer, budget, True)
    return limits


async def reserve_budget(
    ctx: RequestContext,
    counters: Counters,
    settings: Settings,
    *,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    fail_open: bool = False,
) -> Hold | None:
    """Reserve input estimate + output cap and one request on every applicable limit.

    None when no limit applies (or the store is down and fail_open). Raises GatewayError:
    429 budget_exceeded (tokens) / rate_limited (requests), or 503 when the store is down.
    """
    limits = limits_for(ctx, settings)
    if not limits:
        return None
    estimate = estimate_input_tokens(ctx)
    max_output, defaulted = output_cap(ctx, default_max_tokens)
    try:
        result = await counters.reserve(limits, Amounts(estimate + max_output, 1))
    except CountersUnavailable as exc:
        _store_down(ctx, fail_open, exc)
        return None
    if isinstance(result, Refusal):
        raise _refusal_error(ctx, result, estimate, max_output)
    return Hold(result, estimate, max_output, defaulted)


def _store_down(ctx: RequestContext, fail_open: bool, exc: CountersUnavailable) -> None:
    skill = ctx.skill or "-"
    if fail_open:
        BUDGET_STORE_UNAVAILABLE.labels(skill, "admitted").inc()
        ctx.reasons.append(f"budget store unavailable: admitted unmetered (fail_open): {exc}")
        return
    BUDGET_STORE_UNAVAILABLE.labels(skill, "refused").inc()
    raise GatewayError(
        STORE_DOWN_CODE,
        503,
        f"budget store unavailable: skill '{skill}' has budgets that cannot be checked right "
        "now, so the request was not forwarded; retry later",
        rule="budget_store",
        headers={"Retry-After": str(STORE_DOWN_RETRY_S)},
    ) from exc


def _refusal_error(ctx: RequestContext, r: Refusal, estimate: int, max_output: int) -> GatewayError:
    limit = r.limit
    reset = max(1, math.ceil(r.reset_s))
    who = "" if limit.consumer is None else f", for consumer '{limit.consumer}'"
    where = f"skill '{limit.skill}' ({limit.window} window{who})"
    if limit.kind == "tokens":
        need = f"this request needs up to {r.requested:,} (input estimate {estimate:,} + "
        need += f"max_tokens {max_output:,})"
        code: ErrorCode = "budget_exceeded"
        what = "token budget"
    else:
        need, code, what = "this request needs 1 more", "rate_limited", "request limit"
    if r.requested > limit.limit:
        detail = f"{need}, more than the whole limit of {limit.limit:,}"
    else:
        detail = f"{r.used:,} of {limit.limit:,} {limit.kind} used, {need}"
    message = f"{what} exceeded for {where}: {detail}; the window resets in {reset} s"
    headers = budget_headers_for(limit, r.remaining, reset)
    headers["Retry-After"] = str(reset)
    # The SDKs retry 429s on their own but ignore Retry-After above 60 s: make them stop.
    if reset > 60:
        headers["x-should-retry"] = "false"
    return GatewayError(code, 429, message, rule=limit.rule(), headers=headers)


def budget_headers_for(limit: Limit, remaining: int, reset_s: int) -> dict[str, str]:
    k = limit.kind
    return {
        f"x-ratelimit-limit-{k}": str(limit.limit),
        f"x-ratelimit-remaining-{k}": str(remaining),
        f"x-ratelimit-reset-{k}": str(reset_s),
    }


def budget_headers(hold: Hold | None, now: float) -> dict[str, str]:
    """x-ratelimit-* for a successful response: the tightest tokens and requests limits."""
    headers: dict[str, str] = {}
    if hold is None:
        return headers
    for kind in ("tokens", "requests"):
        entry = hold.reservation.tightest(kind)
        if entry is not None:
            remaining = max(0, entry.limit.limit - entry.used)
            reset = max(1, math.ceil(entry.window_end - now))
            headers |= budget_headers_for(entry.limit, remaining, reset)
    return headers


def sanitize_usage(usage: Usage | None, hold: Hold, reasons: list[str]) -> Usage:
    """The usage to charge: fields clamped to [0, HARD_CAP], the total to reserved *
    ABSURD_FACTOR, absent (None or all zero) -> the reservation. Appends why to `reasons`."""
    if usage is None or not any(_fields(usage)):
        reasons.append(
            f"budget: provider reported no usage; charged the reservation ({hold.reserved})"
        )
        return Usage(input_tokens=hold.input_estimate, output_tokens=hold.max_output)
    fields = _fields(usage)
    clean = [min(HARD_CAP, max(0, v)) for v in fields]
    if clean != fields:
        reasons.append(f"budget: usage fields out of range {fields} clamped to {clean}")
    ceiling = hold.reserved * ABSURD_FACTOR
    total = sum(clean)
    if total > ceiling:
        clean = [v * ceiling // total for v in clean]
        reasons.append(
            f"budget: reported usage {total} exceeds {ABSURD_FACTOR}x the reservation "
            f"({hold.reserved}); charged {sum(clean)}"
        )
    return Usage(*clean)


def _fields(usage: Usage) -> list[int]:
    return [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
    ]


async def settle_budget(
    ctx: RequestContext, counters: Counters, hold: Hold | None, usage: Usage | None
) -> Usage | None:
    """Charge the sanitised usage instead of the reservation; returns what was charged
    (None when nothing was reserved). Never raises: the response has already gone out."""
    if hold is None:
        return None
    charged = sanitize_usage(usage, hold, ctx.reasons)
    try:
        await counters.settle(hold.reservation, charged.total_tokens)
    except CountersUnavailable as exc:
        BUDGET_STORE_UNAVAILABLE.labels(ctx.skill or "-", "unsettled").inc()
        ctx.reasons.append(f"budget store unavailable at settle; reservation kept: {exc}")
    return charged


async def release_budget(ctx: RequestContext, counters: Counters, hold: Hold | None) -> None:
    """Give back a reservation whose request never reached a provider (or failed before any
    usage). Idempotent; never raises."""
    if hold is None:
        return
    try:
        await counters.release(hold.reservation)
    except CountersUnavailable as exc:
        BUDGET_STORE_UNAVAILABLE.labels(ctx.skill or "-", "unsettled").inc()
        ctx.reasons.append(f"budget store unavailable at release; reservation kept: {exc}")
