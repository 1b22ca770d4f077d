"""Router: which route list applies, format filter, priority/weight order, models, aliases."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
import pytest

from gateway.errors import GatewayError
from gateway.runtime import provider_target
from gateway.settings import Settings
from gateway.upstream.client import ProviderTarget
from gateway.upstream.router import Router, with_model

KEY = "sk-provider-0123456789"


def settings(extra: dict[str, Any] | None = None, **data: Any) -> Settings:
    providers: dict[str, Any] = {
        "ant-a": {"type": "anthropic", "base_url": "http://a.test", "api_key": KEY},
        "ant-b": {"type": "anthropic", "base_url": "http://b.test", "api_key": KEY},
        "ant-c": {"type": "anthropic", "base_url": "http://c.test", "api_key": KEY},
        "oai": {"type": "openai", "api_key": KEY, "max_retries": 4},
        "local": {"type": "openai_compatible", "base_url": "http://127.0.0.1:11434"},
        "nokey": {"type": "anthropic"},
        "demo": {"type": "demo"},
    }
    for name, fields in (extra or {}).items():
        providers[name] = {**providers[name], **fields}
    return Settings.model_validate({"providers": providers, **data})


def targets(s: Settings) -> dict[str, ProviderTarget]:
    """As the runtime builds them (Runtime.targets)."""
    out = {}
    for name, conf in s.providers.items():
        target = provider_target(name, conf)
        if target is not None:
            out[name] = target
    return out


def router(s: Settings, rng: random.Random | None = None) -> Router:
    return Router(s, targets(s), rng=rng)


def names(router: Router, skill: str | None, fmt: str, model: str | None) -> list[str]:
    return [a.provider for a in router.plan(skill, fmt, model)]  # type: ignore[arg-type]


def test_default_is_every_reachable_provider_of_the_format_in_config_order() -> None:
    r = router(settings())
    assert names(r, None, "anthropic", "claude-x") == ["ant-a", "ant-b", "ant-c"]
    assert names(r, "any-skill", "openai", "gpt-4o") == ["oai", "local"]
    assert r.unreachable == ["demo", "nokey"]
    assert r.table_source("any-skill", "openai") == "providers"


def test_route_list_precedence_skill_then_star_then_global() -> None:
    s = settings(
        routes=[{"provider": "ant-c"}],
        skills={
            "*": {"routes": [{"provider": "ant-b"}]},
            "review": {"routes": [{"provider": "ant-a"}]},
            "plain": {"mode": "filter"},
        },
    )
    r = router(s)
    assert names(r, "review", "anthropic", "m") == ["ant-a"]
    assert names(r, "plain", "anthropic", "m") == ["ant-b"]
    assert names(r, None, "anthropic", "m") == ["ant-b"]
    assert r.table_source("review", "anthropic") == "skills.review.routes"
    r2 = router(settings(routes=[{"provider": "ant-c"}], skills={"plain": {}}))
    assert names(r2, "plain", "anthropic", "m") == ["ant-c"]
    assert r2.table_source("plain", "anthropic") == "routes"


def test_only_providers_serving_the_client_format() -> None:
    s = settings(skills={"x": {"routes": [{"provider": "oai"}, {"provider": "ant-a"}]}})
    r = router(s)
    assert names(r, "x", "anthropic", "m") == ["ant-a"]
    assert names(r, "x", "openai", "m") == ["oai"]
    only_oai = router(settings(skills={"x": {"routes": [{"provider": "oai"}]}}))
    with pytest.raises(GatewayError) as err:
        only_oai.plan("x", "anthropic", "m")
    assert (err.value.code, err.value.status) == ("no_provider_available", 503)
    assert "skills.x.routes" in err.value.message and "Anthropic" in err.value.message


def test_empty_skill_routes_means_no_provider() -> None:
    r = router(settings(skills={"x": {"routes": []}}))
    with pytest.raises(GatewayError, match="no provider"):
        r.plan("x", "anthropic", "m")


def test_priority_order_lower_first() -> None:
    routes = [
        {"provider": "ant-a", "priority": 2},
        {"provider": "ant-b", "priority": 0},
        {"provider": "ant-c", "priority": 1},
    ]
    r = router(settings(routes=routes))
    assert names(r, None, "anthropic", "m") == ["ant-b", "ant-c", "ant-a"]


def test_weighted_shuffle_within_a_priority_is_seedable_and_proportional() -> None:
    routes = [
        {"provider": "ant-a", "weight": 3},
        {"provider": "ant-b", "weight": 1},
        {"provider": "ant-c", "priority": 5},
    ]
    r = router(settings(routes=routes), rng=random.Random(7))
    firsts = Counter(names(r, None, "anthropic", "m")[0] for _ in range(4000))
    assert set(firsts) == {"ant-a", "ant-b"}
    assert 0.70 < firsts["ant-a"] / 4000 < 0.80  # 3:1
    plan = names(r, None, "anthropic", "m")
    assert sorted(plan[:2]) == ["ant-a", "ant-b"] and plan[2] == "ant-c"
    same = [names(router(settings(routes=routes), rng=random.Random(1)), None, "anthropic", "m")]
    assert same == [
        names(router(settings(routes=routes), rng=random.Random(1)), None, "anthropic", "m")
    ]


def test_weight_zero_is_a_backup_never_first() -> None:
    routes = [{"provider": "ant-a", "weight": 0}, {"provider": "ant-b"}, {"provider": "ant-c"}]
    r = router(settings(routes=routes), rng=random.Random(3))
    for _ in range(50):
        assert names(r, None, "anthropic", "m")[-1] == "ant-a"


def test_model_globs_per_route_and_per_provider() -> None:
    routes = [
        {"provider": "ant-a", "models": ["claude-sonnet-*", "claude-opus-4-?"]},
        {"provider": "ant-b", "priority": 1},
    ]
    s = settings({"ant-b": {"models": ["claude-haiku-*"]}}, routes=routes)
    r = router(s)
    assert names(r, None, "anthropic", "claude-sonnet-4-5") == ["ant-a"]
    assert names(r, None, "anthropic", "claude-opus-4-8") == ["ant-a"]
    assert names(r, None, "anthropic", "claude-haiku-4-5") == ["ant-b"]
    with pytest.raises(GatewayError) as err:
        r.plan("review", "anthropic", "claude-opus-4-10")
    e = err.value
    assert (e.code, e.status, e.rule) == ("invalid_request", 403, "routes.models")
    assert "claude-opus-4-10" in e.message and "'review'" in e.message


def test_aliases_rewrite_the_upstream_model_and_admit_the_alias() -> None:
    routes = [
        {"provider": "ant-a", "models": ["claude-*"], "aliases": {"fast": "claude-haiku-4-5"}},
        {"provider": "ant-b", "priority": 1, "aliases": {"fast": "claude-haiku-4-5-20251001"}},
    ]
    r = router(settings(routes=routes))
    plan = r.plan(None, "anthropic", "fast")
    assert [(a.provider, a.model) for a in plan] == [
        ("ant-a", "claude-haiku-4-5"),
        ("ant-b", "claude-haiku-4-5-20251001"),
    ]
    plan = r.plan(None, "anthropic", "claude-opus-4-8")
    assert [(a.provider, a.model) for a in plan] == [
        ("ant-a", "claude-opus-4-8"),
        ("ant-b", "claude-opus-4-8"),
    ]


def test_no_model_means_no_filter_and_no_rewrite() -> None:
    r = router(settings(routes=[{"provider": "ant-a", "models": ["x"]}]))
    assert [(a.provider, a.model) for a in r.plan(None, "anthropic", None)] == [("ant-a", None)]


def test_a_provider_appears_once_and_max_retries_come_from_the_provider() -> None:
    routes = [
        {"provider": "oai"},
        {"provider": "oai", "priority": 2},
        {"provider": "local", "priority": 1},
    ]
    plan = router(settings(routes=routes)).plan(None, "openai", "gpt-4o")
    assert [(a.provider, a.max_retries) for a in plan] == [("oai", 4), ("local", 2)]


def test_injected_targets_extend_the_settings() -> None:
    demo = ProviderTarget("demo", "http://127.0.0.1:9", "anthropic", "demo-key")
    s = settings(routes=[{"provider": "demo"}])
    r = Router(s, {**targets(s), "demo": demo})
    assert [a.target for a in r.plan(None, "anthropic", "m")] == [demo]


def test_plans_are_cached_per_model_but_shuffled_per_call() -> None:
    r = router(settings(routes=[{"provider": "ant-a"}, {"provider": "ant-b"}]), random.Random(0))
    orders = {tuple(names(r, None, "anthropic", "m")) for _ in range(40)}
    assert orders == {("ant-a", "ant-b"), ("ant-b", "ant-a")}
    for i in range(3000):  # client-chosen models never grow the cache without bound
        r.plan(None, "anthropic", f"m{i}")
    assert len(r._cache) <= 1024


def test_with_model_changes_only_the_model() -> None:
    body = {"model": "fast", "max_tokens": 10, "messages": [{"role": "user", "content": "é"}]}
    out = with_model(body, "claude-haiku-4-5")
    assert list(orjson.loads(out)) == ["model", "max_tokens", "messages"]
    assert orjson.loads(out) == {**body, "model": "claude-haiku-4-5"}
    assert body["model"] == "fast"
