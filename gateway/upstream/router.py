"""Route plans: for (skill, client format, requested model), the ordered providers to try.

Which route list applies, first found: ``skills.<skill>.routes``, ``skills."*".routes``,
top-level ``routes``, else every provider of the client's format, in config order (the first
is the primary, the others its fallbacks). Only providers whose kind serves the client's
format are kept (``anthropic`` for /v1/messages, ``openai``/``openai_compatible`` for
/v1/chat/completions): no translation here.

A route admits a requested model when its ``models`` globs are empty, one matches, or the model
is one of its ``aliases`` (naming an alias is allowing it). The alias (else the requested model)
is the upstream model, which must also pass the provider's ``models`` globs.

Ordering: priority ascending; within one priority a weighted random order (Efraimidis-Spirakis:
key = u ** (1/weight), highest first), weight 0 last (a backup that is never picked first).
A provider appears once per plan (its first route wins).

Hot path: tables per (skill, format) are built once per Settings; per (table, model) the
admitted entries are cached (bounded); a request only draws the weighted order.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import translate
from typing import Any, Literal

import orjson

from gateway.errors import GatewayError
from gateway.settings import RouteTarget, Settings
from gateway.upstream.client import ProviderTarget

__all__ = ["PlannedAttempt", "Router", "model_not_allowed", "with_model"]

ClientFormat = Literal["anthropic", "openai"]
_API_NAME = {"anthropic": "Anthropic Messages", "openai": "OpenAI Chat Completions"}
_CACHE_MAX = 1024


@dataclass(frozen=True, slots=True)
class PlannedAttempt:
    """One provider to try: where, which upstream model (None: the request names none), and
    how many retries of the same provider the attempt loop may spend on it."""

    target: ProviderTarget
    model: str | None
    max_retries: int

    @property
    def provider(self) -> str:
        return self.target.name


@dataclass(frozen=True, slots=True)
class _Entry:
    target: ProviderTarget
    max_retries: int
    priority: int
    weight: int
    route_models: re.Pattern[str] | None  # None: any
    provider_models: re.Pattern[str] | None
    aliases: Mapping[str, str]

    def upstream_model(self, model: str) -> str | None:
        """The provider model for a requested model, or None when this route refuses it."""
        alias = self.aliases.get(model)
        if alias is None and self.route_models is not None and not self.route_models.match(model):
            return None
        upstream = alias or model
        if self.provider_models is not None and not self.provider_models.match(upstream):
            return None
        return upstream


@dataclass(frozen=True, slots=True)
class _Table:
    source: str  # config path of the route list, for messages and GatewayError.rule
    entries: tuple[_Entry, ...]  # sorted by priority (stable: config order within one)


def _globs(patterns: Iterable[str]) -> re.Pattern[str] | None:
    pats = list(patterns)
    return re.compile("|".join(translate(p) for p in pats)) if pats else None


def model_not_allowed(skill: str | None, model: str, source: str) -> GatewayError:
    who = f"skill {skill!r}" if skill else "requests without a skill"
    return GatewayError(
        "invalid_request",
        403,
        f"model {model!r} is not allowed for {who} (no route in {source} admits it)",
        rule=f"{source}.models",
    )


class Router:
    """Route plans for one Settings; build a new Router on config reload (breakers are kept
    elsewhere, so rebuilding loses nothing)."""

    def __init__(
        self,
        settings: Settings,
        targets: Mapping[str, ProviderTarget],
        *,
        rng: random.Random | None = None,
    ) -> None:
        # targets: the reachable providers by name (Runtime.targets); a route naming any other
        # (demo, no key) is left out of every plan. A target's kind decides the format it serves.
        self._targets = dict(targets)
        self._providers = settings.providers
        self._rng = rng or random.Random()
        self._cache: dict[tuple[int, str], tuple[tuple[_Entry, str], ...]] = {}
        fmts: tuple[ClientFormat, ...] = ("anthropic", "openai")
        star = settings.skills.get("*")
        if star is not None and star.routes is not None:
            default_src, default_routes = 'skills."*".routes', star.routes
        elif settings.routes:
            default_src, default_routes = "routes", settings.routes
        else:
            # No routes at all: the providers in config order, each the next one's fallback.
            default_src = "providers"
            default_routes = [
                RouteTarget(provider=n, priority=i) for i, n in enumerate(settings.providers)
            ]
        self._default = {f: self._table(default_src, default_routes, f) for f in fmts}
        self._skills: dict[tuple[str, ClientFormat], _Table] = {}
        for name, policy in settings.skills.items():
            if name != "*" and policy.routes is not None:
                src = f"skills.{name}.routes"
                for f in fmts:
                    self._skills[(name, f)] = self._table(src, policy.routes, f)
        # Configured providers that no plan can use (demo, missing key): for start-up logs.
        self.unreachable = sorted({n for n in self._providers if n not in self._targets})

    @property
    def rng(self) -> random.Random:
        """This router's generator, also for retry jitter: a random.Random() per request
        seeds itself from os.urandom (a syscall and ~5 us each)."""
        return self._rng

    def _table(self, source: str, routes: Iterable[RouteTarget], fmt: ClientFormat) -> _Table:
        entries = []
        for r in routes:
            target = self._targets.get(r.provider)
            if target is None or target.kind != fmt:
                continue
            p = self._providers.get(r.provider)
            entry = _Entry(
                target=target,
                max_retries=p.max_retries if p is not None else 0,
                priority=r.priority,
                weight=r.weight,
                route_models=_globs(r.models),
                provider_models=_globs(p.models) if p is not None else None,
                aliases=dict(r.aliases),
            )
            entries.append(entry)
        entries.sort(key=lambda e: e.priority)  # stable: config order within a priority
        return _Table(source, tuple(entries))

    def table_source(self, skill: str | None, client_format: ClientFormat) -> str:
        """Which config list routes this skill (for logs and the UI)."""
        return self._lookup(skill, client_format).source

    def _lookup(self, skill: str | None, fmt: ClientFormat) -> _Table:
        if skill is not None:
            table = self._skills.get((skill, fmt))
            if table is not None:
                return table
        return self._default[fmt]

    def plan(
        self, skill: str | None, client_format: ClientFormat, model: str | None
    ) -> list[PlannedAttempt]:
        """The ordered attempts for one request. Raises GatewayError: 503 no_provider_available
        when no route serves the client's format, 403 invalid_request (rule ``<list>.models``)
        when routes exist but none admits the model."""
        table = self._lookup(skill, client_format)
        if not table.entries:
            who = f"skill {skill!r}" if skill else "requests without a skill"
            raise GatewayError(
                "no_provider_available",
                503,
                f"no provider in {table.source} serves the {_API_NAME[client_format]} API "
                f"for {who}",
                rule=table.source,
            )
        admitted = self._admitted(table, model)
        if not admitted:
            raise model_not_allowed(skill, model or "", table.source)
        return self._order(admitted)

    def _admitted(self, table: _Table, model: str | None) -> tuple[tuple[_Entry, str], ...]:
        if model is None:  # e.g. GET /v1/models: nothing to filter or rewrite
            return tuple((e, "") for e in table.entries)
        key = (id(table), model)
        found = self._cache.get(key)
        if found is None:
            pairs = []
            for e in table.entries:
                upstream = e.upstream_model(model)
                if upstream is not None:
                    pairs.append((e, upstream))
            found = tuple(pairs)
            if len(self._cache) < _CACHE_MAX:  # models come from clients: bound the cache
                self._cache[key] = found
        return found

    def _order(self, admitted: tuple[tuple[_Entry, str], ...]) -> list[PlannedAttempt]:
        plan: list[PlannedAttempt] = []
        seen: set[str] = set()
        i, n = 0, len(admitted)
        while i < n:
            j = i + 1
            while j < n and admitted[j][0].priority == admitted[i][0].priority:
                j += 1
            group = admitted[i:j] if j - i == 1 else self._shuffle(admitted[i:j])
            for e, upstream in group:
                if e.target.name not in seen:
                    seen.add(e.target.name)
                    plan.append(PlannedAttempt(e.target, upstream or None, e.max_retries))
            i = j
        return plan

    def _shuffle(self, group: tuple[tuple[_Entry, str], ...]) -> list[tuple[_Entry, str]]:
        rnd = self._rng.random
        weighted = [(rnd() ** (1.0 / pair[0].weight), pair) for pair in group if pair[0].weight]
        weighted.sort(key=lambda kv: kv[0], reverse=True)
        return [pair for _, pair in weighted] + [pair for pair in group if not pair[0].weight]


def with_model(body: Mapping[str, Any], model: str) -> bytes:
    """The request body with only ``model`` changed (same key order, every other field as is).

    For an aliased attempt: the caller keeps the original bytes for attempts whose upstream
    model equals the requested one and calls this once per distinct alias."""
    return orjson.dumps({**body, "model": model})
