"""What the proxy needs at run time, built once by the lifespan: upstream client, audit store,
policy engine, skill cache, key lookups and the compiled per-skill settings."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from gateway.demo.server import demo_upstream
from gateway.formats.known_tools import KnownTools
from gateway.patterns import LinearPattern, compile_pattern
from gateway.settings import GuardSettings, ProviderSettings, Settings, SkillPolicy
from gateway.state.audit import AuditStore, open_audit_store
from gateway.state.audit_retention import retention
from gateway.state.counters import Counters, open_counters
from gateway.state.keys import ApiKey, ApiKeyStore, hash_key
from gateway.state.notify import RegistrySync, open_notifier, registry_sync
from gateway.state.session_skills import SessionSkills
from gateway.upstream.breaker import Breakers
from gateway.upstream.client import ProviderTarget, Timeouts, UpstreamClient
from gateway.upstream.cost import PriceBook
from gateway.upstream.router import Router
from policies.enforcer import PolicyEngine, SkillEnforcer
from skills_registry.manifest import SkillVersion
from skills_registry.store import SkillStore

__all__ = [
    "CompiledGuard",
    "ConfigKey",
    "ResolvedSkill",
    "Runtime",
    "SkillCache",
    "open_runtime",
    "provider_target",
]

log = logging.getLogger("skillwarden.runtime")
_DEFAULT_BASE = {"anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com/v1"}
_LATEST_TTL_S = 5.0  # a new publish becomes the default version within this many seconds
_KEY_TTL_S = 10.0  # a revoked key stops working within this many seconds
_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class CompiledGuard:
    """A prompt guard with its patterns compiled once, with RE2 (settings validated them)."""

    allow: tuple[LinearPattern, ...]
    deny: tuple[LinearPattern, ...]
    roles: Literal["user", "all"]
    whole_history: bool

    @classmethod
    def compile(cls, guard: GuardSettings) -> CompiledGuard:
        return cls(
            tuple(compile_pattern(p) for p in guard.allow),
            tuple(compile_pattern(p) for p in guard.deny),
            guard.roles,
            guard.whole_history,
        )


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """skills[name] over skills["*"] over the product defaults."""

    mode: Literal["filter", "reject", "observe"]
    response_mode: Literal["redact", "error"]
    always_allowed: frozenset[str]
    guard: CompiledGuard | None


@dataclass(frozen=True, slots=True)
class ResolvedSkill:
    version: SkillVersion
    enforcer: SkillEnforcer
    policy: EffectivePolicy

    @property
    def ref(self) -> str:
        return self.version.ref


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """A key from settings.consumers (compared by hash; the plaintext is not kept)."""

    consumer: str
    skills: tuple[str, ...] | None


def _effective(settings: Settings, name: str) -> EffectivePolicy:
    own = settings.skills.get(name) or SkillPolicy()
    star = settings.skills.get("*") or SkillPolicy()
    guard = own.guard or None
    always = own.always_allowed if own.always_allowed is not None else star.always_allowed
    return EffectivePolicy(
        mode=own.mode or star.mode or "filter",
        response_mode=own.response_mode or star.response_mode or "redact",
        always_allowed=frozenset(always or ()),
        guard=CompiledGuard.compile(guard) if guard is not None else None,
    )


class SkillCache:
    """name or name@version -> ResolvedSkill. Pinned versions never change (cached until
    evicted); the latest version is looked up again after a few seconds. reload() forgets all."""

    def __init__(self, store: SkillStore, engine: PolicyEngine, settings: Settings) -> None:
        self._store = store
        self._engine = engine
        self._settings = settings
        self._entries: dict[tuple[str, str | None], tuple[float, ResolvedSkill | None]] = {}
        self._generation = 0  # bumped by reload()

    async def resolve(self, name: str, version: str | None) -> ResolvedSkill | None:
        key = (name, version)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and (hit[0] > now):
            return hit[1]
        generation = self._generation
        found = await self._store.get_version(name, version)
        resolved = None
        if found is not None:
            enforcer = self._engine.enforcer(found.ref, found.policy)
            resolved = ResolvedSkill(found, enforcer, _effective(self._settings, name))
        ttl = float("inf") if version is not None and resolved is not None else _LATEST_TTL_S
        if generation != self._generation:
            return resolved  # read before a reload: may predate the change, do not cache it
        if len(self._entries) >= _CACHE_MAX:
            self._entries.clear()  # names come from clients: keep memory bounded
        self._entries[key] = (now + ttl, resolved)
        return resolved

    def reload(self) -> None:
        """Forget every cached resolution (after a publish or a config change)."""
        self._generation += 1
        self._entries.clear()


class KeyCache:
    """Gateway keys: settings.consumers keys by hash, then the key store with a short TTL."""

    def __init__(self, store: ApiKeyStore, settings: Settings) -> None:
        self._store = store
        self._config: dict[str, ConfigKey] = {}
        for consumer, conf in settings.consumers.items():
            skills = tuple(conf.skills) if conf.skills is not None else None
            for secret in conf.api_keys:
                self._config[hash_key(secret.get_secret_value())] = ConfigKey(consumer, skills)
        self._consumer_skills = {
            name: tuple(c.skills) for name, c in settings.consumers.items() if c.skills is not None
        }
        self._stored: dict[str, tuple[float, ApiKey]] = {}

    async def lookup(self, plaintext: str) -> ConfigKey | ApiKey | None:
        digest = hash_key(plaintext)
        found = self._config.get(digest)
        if found is not None:
            return found
        now = time.monotonic()
        hit = self._stored.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        key = await self._store.verify(plaintext)
        if key is not None:  # unknown keys are not cached: clients choose them freely
            if len(self._stored) >= _CACHE_MAX:
                self._stored.clear()
            self._stored[digest] = (now + _KEY_TTL_S, key)
        return key

    def consumer_skills(self, consumer: str) -> tuple[str, ...] | None:
        """The entitlement settings.consumers gives a consumer by name (None: not restricted)."""
        return self._consumer_skills.get(consumer)


def provider_target(name: str, conf: ProviderSettings) -> ProviderTarget | None:
    """The upstream target of a configured provider; None for kinds this build does not call."""
    if conf.type == "demo":
        return None  # issue 4 item 10: the demo provider answers in-process
    kind: Literal["anthropic", "openai"] = "anthropic" if conf.type == "anthropic" else "openai"
    key = conf.api_key.get_secret_value() if conf.api_key is not None else ""
    if not key:
        if conf.type != "openai_compatible":
            return None  # no key: nothing to call; requests get no_provider_available
        key = "none"  # Ollama and vLLM accept any bearer token
    # timeout_s bounds each silence (first byte, between stream events), not a whole stream.
    timeouts = Timeouts(
        connect=conf.connect_timeout_s, first_byte=conf.timeout_s, idle=conf.timeout_s, total=None
    )
    return ProviderTarget(
        name=name,
        base_url=conf.base_url or _DEFAULT_BASE[kind],
        kind=kind,
        api_key=key,
        timeouts=timeouts,
        extra_headers=tuple(conf.headers.items()),
    )


@dataclass(slots=True)
class Runtime:
    settings: Settings
    upstream: UpstreamClient
    audit: AuditStore
    engine: PolicyEngine
    skills: SkillCache
    keys: KeyCache
    targets: dict[str, ProviderTarget]  # by provider name, in settings order
    guard: CompiledGuard
    star: SkillPolicy
    counters: Counters  # budget and rate counters (settings.state)
    router: Router  # route plans per (skill, client format, model)
    breakers: Breakers  # per provider, per process; kept across config reloads
    prices: PriceBook  # cost_usd of audit records
    registry: RegistrySync | None = None  # reload here + notify other replicas after a publish
    known_tools: KnownTools = field(default_factory=KnownTools)  # tools arrays parsed before
    # The skill each Claude Code session's LLM path bound, for the check API (per process).
    session_skills: SessionSkills = field(default_factory=SessionSkills)


@asynccontextmanager
async def open_runtime(
    settings: Settings, skill_store: SkillStore, key_store: ApiKeyStore
) -> AsyncIterator[Runtime]:
    """Start the upstream sessions and the audit writer; close (and flush) them on exit."""
    # A provider of type demo: the scripted model on a loopback port for the runtime's lifetime,
    # reached through the real forward path (gateway/demo/server.py rewrites its settings).
    async with (
        demo_upstream(settings) as effective,
        _open_runtime(effective, skill_store, key_store) as rt,
    ):
        yield rt


@asynccontextmanager
async def _open_runtime(
    settings: Settings, skill_store: SkillStore, key_store: ApiKeyStore
) -> AsyncIterator[Runtime]:
    targets: dict[str, ProviderTarget] = {}
    for name, conf in settings.providers.items():
        target = provider_target(name, conf)
        if target is not None:
            targets[name] = target
    engine = PolicyEngine()
    audit = open_audit_store(settings.audit_storage_url, max_queue=settings.audit.queue_size)
    upstream = UpstreamClient(targets.values())
    state = settings.state
    counters = open_counters(state.url, state.key_prefix, timeout_s=state.timeout_s)
    skills = SkillCache(skill_store, engine, settings)
    notifier = open_notifier(state.url, state.key_prefix, timeout_s=state.timeout_s)
    reload_s = settings.server.registry_reload_s
    await audit.open()
    try:
        await upstream.start()
        try:
            async with (
                registry_sync(notifier, skills.reload, reload_s) as registry,
                retention(audit, settings.audit.retention_days),  # prunes off the event loop
            ):
                yield Runtime(
                    settings=settings,
                    upstream=upstream,
                    audit=audit,
                    engine=engine,
                    skills=skills,
                    keys=KeyCache(key_store, settings),
                    targets=targets,
                    guard=CompiledGuard.compile(settings.guard),
                    star=settings.skills.get("*") or SkillPolicy(),
                    counters=counters,
                    router=Router(settings, targets),
                    breakers=Breakers.from_providers(settings.providers),
                    prices=PriceBook(settings.providers),
                    registry=registry,
                )
        finally:
            await upstream.close()
            await counters.aclose()
    finally:
        await audit.close()
