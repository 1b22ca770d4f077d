"""Budget stage: the estimate, which limits apply, 429s and their headers, usage clamping, and
fail-closed / fail-open when the counter store cannot be reached (a closed port, not a mock)."""

from __future__ import annotations

import socket
import time
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from gateway.errors import GatewayError
from gateway.formats.canonical import Usage
from gateway.pipeline.budget import (
    DEFAULT_MAX_TOKENS,
    STORE_DOWN_CODE,
    Hold,
    budget_headers,
    estimate_input_tokens,
    limits_for,
    output_cap,
    release_budget,
    reserve_budget,
    settle_budget,
)
from gateway.pipeline.context import ClientFormat, RequestContext
from gateway.settings import Settings
from gateway.state.counters import Limit, open_counters
from gateway.state.counters_memory import MemoryCounters


def make_ctx(
    body: dict[str, Any] | None = None,
    *,
    fmt: ClientFormat = "anthropic",
    skill: str | None = "code-review",
    consumer: str | None = "alice",
    raw: bytes | None = None,
) -> RequestContext:
    body = {"max_tokens": 1_000, "messages": []} if body is None else body
    ctx = RequestContext("r1", "/v1/messages", fmt, {}, orjson.dumps(body) if raw is None else raw)
    ctx.body, ctx.skill, ctx.consumer = body, skill, consumer
    return ctx


def make_settings(**data: Any) -> Settings:
    return Settings.model_validate({"data_dir": "/tmp/sw-unused", **data})


HOURLY = make_settings(skills={"code-review": {"budgets": [{"window": "hour", "tokens": 10_000}]}})


def unavailable(skill: str, outcome: str) -> float:
    labels = {"skill": skill, "outcome": outcome}
    return REGISTRY.get_sample_value("skillwarden_budget_store_unavailable_total", labels) or 0.0


def closed_port_counters() -> Any:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return open_counters(f"redis://127.0.0.1:{port}/0", "swtest:down:", timeout_s=0.5)


# --- estimate and output cap ----------------------------------------------------------------


@pytest.mark.parametrize(("size", "expected"), [(0, 1), (4, 1), (5, 2), (4_000, 1_000)])
def test_estimate_is_body_bytes_over_four(size: int, expected: int) -> None:
    assert estimate_input_tokens(make_ctx(raw=b"x" * size)) == expected


def test_estimate_is_bounded() -> None:
    assert estimate_input_tokens(make_ctx(raw=b"x" * 8_000_000)) == 1_000_000


@pytest.mark.parametrize(
    ("fmt", "body", "expected"),
    [
        ("anthropic", {"max_tokens": 1_000}, (1_000, False)),
        ("anthropic", {}, (DEFAULT_MAX_TOKENS, True)),
        ("openai", {"max_tokens": 300}, (300, False)),
        ("openai", {"max_completion_tokens": 200, "max_tokens": 300}, (200, False)),
        ("openai", {}, (DEFAULT_MAX_TOKENS, True)),
        ("openai", {"max_tokens": True}, (DEFAULT_MAX_TOKENS, True)),  # a bool is not a count
        ("openai", {"max_tokens": -5}, (0, False)),
        ("anthropic", {"max_tokens": 10**12}, (1_000_000, False)),
    ],
)
def test_output_cap(fmt: ClientFormat, body: dict[str, Any], expected: tuple[int, bool]) -> None:
    assert output_cap(make_ctx(body, fmt=fmt), DEFAULT_MAX_TOKENS) == expected


def test_output_cap_default_is_a_parameter() -> None:
    assert output_cap(make_ctx({}, fmt="openai"), 512) == (512, True)


# --- which limits ------------------------------------------------------------------------------


def test_limits_from_the_skill_and_the_consumer() -> None:
    settings = make_settings(
        skills={
            "code-review": {
                "budgets": [
                    {"window": "hour", "tokens": 10_000, "requests": 100},
                    {"window": "day", "scope": "consumer", "tokens": 50_000},
                ]
            },
            "*": {"budgets": [{"window": "minute", "tokens": 1}]},
        },
        consumers={"alice": {"budgets": [{"window": "month", "requests": 9}]}},
    )
    assert limits_for(make_ctx(), settings) == [
        Limit("code-review", "hour", "tokens", 10_000),
        Limit("code-review", "hour", "requests", 100),
        Limit("code-review", "day", "tokens", 50_000, "alice"),
        Limit("code-review", "month", "requests", 9, "alice"),
    ]


def test_star_is_the_default_and_an_explicit_empty_list_opts_out() -> None:
    settings = make_settings(
        skills={
            "*": {"budgets": [{"window": "day", "tokens": 5}]},
            "pdf": {"mode": "observe"},  # no budgets key: inherits "*"
            "free": {"budgets": []},
        }
    )
    assert limits_for(make_ctx(skill="pdf"), settings) == [Limit("pdf", "day", "tokens", 5)]
    assert limits_for(make_ctx(skill="other"), settings) == [Limit("other", "day", "tokens", 5)]
    assert limits_for(make_ctx(skill="free"), settings) == []
    assert limits_for(make_ctx(skill=None), settings) == []


# --- reserve ------------------------------------------------------------------------------------


async def test_reserve_holds_estimate_plus_max_tokens() -> None:
    ctx = make_ctx()
    hold = await reserve_budget(ctx, MemoryCounters(), HOURLY)
    assert hold is not None
    assert hold.reserved == estimate_input_tokens(ctx) + 1_000
    assert (hold.max_output, hold.defaulted_output) == (1_000, False)
    assert await reserve_budget(make_ctx(skill="other"), MemoryCounters(), HOURLY) is None


async def test_over_budget_is_429_with_headers_and_a_message() -> None:
    counters = MemoryCounters()
    for _ in range(9):
        assert await reserve_budget(make_ctx(), counters, HOURLY) is not None
    with pytest.raises(GatewayError) as caught:
        await reserve_budget(make_ctx(), counters, HOURLY)
    err = caught.value
    assert (err.code, err.status, err.rule) == (
        "budget_exceeded",
        429,
        "budget:code-review:skill:hour:tokens",
    )
    assert "skill 'code-review'" in err.message and "hour window" in err.message
    reset = int(err.headers["Retry-After"])
    assert 1 <= reset <= 3_600
    used = 9 * (estimate_input_tokens(make_ctx()) + 1_000)
    assert err.headers["x-ratelimit-limit-tokens"] == "10000"
    assert err.headers["x-ratelimit-remaining-tokens"] == str(10_000 - used)
    assert err.headers["x-ratelimit-reset-tokens"] == str(reset)
    assert err.headers.get("x-should-retry") == ("false" if reset > 60 else None)


async def test_a_request_larger_than_the_budget_says_so() -> None:
    with pytest.raises(GatewayError, match="more than the whole limit of 10,000"):
        await reserve_budget(make_ctx({"max_tokens": 20_000}), MemoryCounters(), HOURLY)


async def test_request_limits_are_rate_limited() -> None:
    settings = make_settings(
        consumers={"alice": {"budgets": [{"window": "minute", "requests": 1}]}}
    )
    counters = MemoryCounters()
    await reserve_budget(make_ctx(), counters, settings)
    with pytest.raises(GatewayError) as caught:
        await reserve_budget(make_ctx(), counters, settings)
    err = caught.value
    assert (err.code, err.status) == ("rate_limited", 429)
    assert "consumer 'alice'" in err.message and "minute window" in err.message
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-should-retry" not in err.headers


async def test_store_down_fails_closed_and_counts() -> None:
    before = unavailable("code-review", "refused")
    counters = closed_port_counters()
    with pytest.raises(GatewayError) as caught:
        await reserve_budget(make_ctx(), counters, HOURLY)
    err = caught.value
    assert (err.code, err.status) == (STORE_DOWN_CODE, 503)
    assert err.message.startswith("budget store unavailable")
    assert err.headers["Retry-After"] == "5"
    assert unavailable("code-review", "refused") == before + 1
    await counters.aclose()


async def test_store_down_fail_open_admits_unmetered_and_counts() -> None:
    before = unavailable("code-review", "admitted")
    counters, ctx = closed_port_counters(), make_ctx()
    assert await reserve_budget(ctx, counters, HOURLY, fail_open=True) is None
    assert any("admitted unmetered" in r for r in ctx.reasons)
    assert unavailable("code-review", "admitted") == before + 1
    await counters.aclose()


# --- settle and release -------------------------------------------------------------------------


async def reserved(counters: MemoryCounters, body: dict[str, Any] | None = None) -> Hold:
    hold = await reserve_budget(make_ctx(body), counters, HOURLY)
    assert hold is not None
    return hold


async def used(counters: MemoryCounters) -> int:
    return (await counters.usage(Limit("code-review", "hour", "tokens", 10_000))).used


async def test_settle_charges_reported_usage() -> None:
    counters, ctx = MemoryCounters(), make_ctx()
    hold = await reserved(counters)
    usage = Usage(input_tokens=10, output_tokens=200, cache_read_input_tokens=40)
    assert await settle_budget(ctx, counters, hold, usage) == usage
    assert await used(counters) == 250
    assert ctx.reasons == []
    await settle_budget(ctx, counters, hold, Usage(output_tokens=9_000))  # once only
    assert await used(counters) == 250


async def test_absent_usage_charges_the_reservation() -> None:
    counters = MemoryCounters()
    for usage in (None, Usage()):
        ctx = make_ctx()
        hold = await reserved(counters)
        charged = await settle_budget(ctx, counters, hold, usage)
        assert charged == Usage(input_tokens=hold.input_estimate, output_tokens=1_000)
        assert "provider reported no usage" in ctx.reasons[0]


async def test_negative_and_absurd_usage_is_clamped_and_audited() -> None:
    counters, ctx = MemoryCounters(), make_ctx()
    hold = await reserved(counters)
    charged = await settle_budget(ctx, counters, hold, Usage(input_tokens=-7, output_tokens=30))
    assert charged == Usage(input_tokens=0, output_tokens=30)
    assert "out of range" in ctx.reasons[0]

    ctx2 = make_ctx()
    hold2 = await reserved(counters)
    charged = await settle_budget(ctx2, counters, hold2, Usage(output_tokens=2**62))
    assert charged is not None and charged.total_tokens <= 4 * hold2.reserved
    assert any("exceeds 4x the reservation" in r for r in ctx2.reasons)
    assert await used(counters) == 30 + charged.total_tokens


async def test_release_gives_the_reservation_back() -> None:
    counters, ctx = MemoryCounters(), make_ctx()
    hold = await reserved(counters)
    await release_budget(ctx, counters, hold)
    await release_budget(ctx, counters, hold)
    assert await used(counters) == 0
    assert await settle_budget(ctx, counters, None, Usage(output_tokens=5)) is None
    await release_budget(ctx, counters, None)


async def test_settle_with_the_store_down_never_raises() -> None:
    memory, ctx = MemoryCounters(), make_ctx()
    hold = await reserved(memory)
    before = unavailable("code-review", "unsettled")
    counters = closed_port_counters()
    await settle_budget(ctx, counters, hold, Usage(output_tokens=5))
    await release_budget(ctx, counters, hold)
    assert unavailable("code-review", "unsettled") == before + 2
    assert sum("reservation kept" in r for r in ctx.reasons) == 2
    await counters.aclose()


async def test_success_headers_show_the_tightest_limits() -> None:
    counters = MemoryCounters()
    hold = await reserved(counters)
    headers = budget_headers(hold, time.time())
    assert headers["x-ratelimit-limit-tokens"] == "10000"
    assert headers["x-ratelimit-remaining-tokens"] == str(10_000 - hold.reserved)
    assert "x-ratelimit-limit-requests" not in headers
    assert budget_headers(None, time.time()) == {}
