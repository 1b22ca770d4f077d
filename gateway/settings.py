"""pydantic models of skillwarden.yaml and load_settings(): file, ${ENV}, SKILLWARDEN_* overrides.

This is the only module that reads the process environment; everything else receives Settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)
from pydantic import model_validator as _model_validator

from gateway.patterns import PatternError, compile_pattern
from gateway.settings_source import (
    CONFIG_ENV,
    deep_merge,
    env_overrides,
    expand_env,
    load_yaml_text,
)
from skills_registry.manifest import Problem

__all__ = [
    "AdminSettings",
    "AuditSettings",
    "BudgetSettings",
    "ConfigInvalid",
    "ConsumerSettings",
    "GuardSettings",
    "ProviderSettings",
    "RouteTarget",
    "ServerSettings",
    "Settings",
    "SkillPolicy",
    "StateSettings",
    "load_settings",
]


class ConfigInvalid(Exception):
    """Raised with every problem of a configuration at once; the gateway never starts on it."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in configuration")
        self.problems = problems


def _compile_regex(pattern: str) -> str:
    # Compiled at load, with the engine that runs it (RE2), so a pattern it cannot run is a
    # config problem with a reason, not a runtime 500.
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        raise ValueError(str(exc)) from None
    return pattern


def _storage_url(url: str) -> str:
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ValueError("must be sqlite:///path or postgresql://...")
    return url


def _state_url(url: str) -> str:
    if url != "memory" and not url.startswith(("redis://", "rediss://")):
        raise ValueError("must be memory or redis://...")
    return url


def _state_shape(value: Any) -> Any:
    # `state: redis://...` is shorthand for `state: {url: redis://...}`; a bad URL in the
    # shorthand is reported at `state` itself, as before the mapping form existed.
    return {"url": _state_url(value)} if isinstance(value, str) else value


def _long_secret(key: SecretStr) -> SecretStr:
    if len(key.get_secret_value()) < 16:
        raise ValueError("must be at least 16 characters")
    return key


Regex = Annotated[str, AfterValidator(_compile_regex)]
StorageUrl = Annotated[str, AfterValidator(_storage_url)]
Window = Literal["minute", "hour", "day", "month"]
DEFAULT_MAX_TOKENS = 4096  # output cap of an OpenAI request without max_tokens


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)  # LLM request bodies
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # Full skill-cache reload: the propagation bound between replicas when notices are lost.
    registry_reload_s: float = Field(default=30.0, ge=0.1, le=86_400)
    # Trust X-Forwarded-For/-Proto from the peer: only behind a trusted reverse proxy.
    proxy_headers: bool = False


class AdminSettings(_Model):
    enabled: bool = True
    max_upload_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # POST /admin/skills bodies
    publish_sample_skills: bool = True  # on first start, and idempotently afterwards
    create_keys: bool = True  # an admin and an agent key when none exist


class ProviderSettings(_Model):
    type: Literal["anthropic", "openai", "openai_compatible", "demo"]
    base_url: str | None = None
    api_key: SecretStr | None = None
    models: list[str] = []  # allow-list; empty = any model
    headers: dict[str, str] = {}
    timeout_s: float = Field(default=600.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    breaker_failures: int = Field(default=5, ge=1)  # consecutive failures that open the circuit
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    prices: dict[str, dict[Literal["input_per_mtok", "output_per_mtok"], float]] = {}


class RouteTarget(_Model):
    provider: str
    priority: int = 0  # lower is tried first
    weight: int = Field(default=1, ge=0)  # share within one priority
    models: list[str] = []  # model allow-list (globs); empty = any
    aliases: dict[str, str] = {}  # requested model -> provider model


class BudgetSettings(_Model):
    window: Window
    scope: Literal["skill", "consumer"] = "skill"  # per skill, or per (consumer, skill)
    tokens: int | None = Field(default=None, ge=0)
    requests: int | None = Field(default=None, ge=0)

    @_model_validator(mode="after")
    def _needs_a_limit(self) -> BudgetSettings:
        if self.tokens is None and self.requests is None:
            raise ValueError("a budget needs tokens or requests")
        return self


class StateSettings(_Model):
    """Where budget and rate counters live (`state:` as a URL string or this mapping)."""

    url: Annotated[str, AfterValidator(_state_url)] = "memory"
    key_prefix: str = Field(default="skillwarden:", min_length=1)  # Redis keys start with it
    timeout_s: float = Field(default=1.0, gt=0, le=60)  # connect and per command
    fail_open: bool = False  # store down: admit budgeted requests unmetered instead of 503


class GuardSettings(_Model):
    allow: list[Regex] = []  # when non-empty, user content must match one
    deny: list[Regex] = []
    roles: Literal["user", "all"] = "user"
    whole_history: bool = False  # else only the latest turn


class SkillPolicy(_Model):
    mode: Literal["filter", "reject", "observe"] | None = None
    response_mode: Literal["redact", "error"] | None = None
    always_allowed: list[str] | None = None
    budgets: list[BudgetSettings] = []
    routes: list[RouteTarget] | None = None
    # Reserved (and sent upstream) for an OpenAI request that states no max_tokens.
    default_max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    guard: GuardSettings | None = None
    no_skill: str | None = None  # only under "*": "deny" or a baseline skill name


class ConsumerSettings(_Model):
    skills: list[str] | None = None  # None = every skill
    # Plaintext keys, usually from ${ENV}; short ones (an unset ${X:-}) would be guessable.
    api_keys: list[Annotated[SecretStr, AfterValidator(_long_secret)]] = []
    budgets: list[BudgetSettings] = []


class AuditSettings(_Model):
    storage: StorageUrl | None = None  # default: the main storage URL
    store_bodies: bool = False
    redact: list[Regex] = []  # applied to stored bodies
    queue_size: int = Field(default=10_000, ge=1)
    retention_days: int | None = Field(default=None, ge=1)


class Settings(_Model):
    server: ServerSettings = ServerSettings()
    admin: AdminSettings = AdminSettings()
    data_dir: Path = Path(".skillwarden")
    storage: StorageUrl = ""  # default sqlite:///<data_dir>/skillwarden.db
    state: Annotated[StateSettings, BeforeValidator(_state_shape)] = StateSettings()
    providers: dict[str, ProviderSettings] = {}
    routes: list[RouteTarget] = []
    skills: dict[str, SkillPolicy] = {}
    consumers: dict[str, ConsumerSettings] = {}
    guard: GuardSettings = GuardSettings()
    audit: AuditSettings = AuditSettings()

    @_model_validator(mode="before")
    @classmethod
    def _default_storage(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("storage"):
            data_dir = Path(str(data.get("data_dir") or ".skillwarden"))
            data = {**data, "storage": f"sqlite:///{data_dir.absolute() / 'skillwarden.db'}"}
        return data

    @property
    def storage_url(self) -> str:
        return self.storage

    @property
    def audit_storage_url(self) -> str:
        return self.audit.storage or self.storage

    @property
    def state_url(self) -> str:
        return self.state.url

    def default_max_tokens(self, skill: str | None) -> int:
        """skills[skill].default_max_tokens, else skills["*"]'s, else 4096."""
        for name in (skill, "*"):
            policy = self.skills.get(name) if name is not None else None
            if policy is not None and policy.default_max_tokens is not None:
                return policy.default_max_tokens
        return DEFAULT_MAX_TOKENS


def _semantic_problems(settings: Settings) -> list[Problem]:
    """Cross-field rules pydantic cannot see field by field."""
    problems: list[Problem] = []
    known = set(settings.providers) | {"demo"}
    targets = [(f"routes.{i}", r) for i, r in enumerate(settings.routes)]
    for name, policy in settings.skills.items():
        targets += [(f"skills.{name}.routes.{i}", r) for i, r in enumerate(policy.routes or [])]
        if policy.no_skill is not None and name != "*":
            problems.append(Problem(f"skills.{name}.no_skill", "allowed only under '*'", name))
    for path, route in targets:
        if route.provider not in known:
            problems.append(Problem(f"{path}.provider", "unknown provider", route.provider))
    return problems


def _pydantic_problems(exc: ValidationError, origins: Mapping[str, str]) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path = ".".join(str(part) for part in err["loc"]) or "<root>"
        rule = err["msg"].removeprefix("Value error, ")
        origin = next((v for p, v in origins.items() if path == p or path.startswith(p + ".")), "")
        if origin:
            path = f"{path} (from {origin})"
        value = err.get("input")
        shown = "" if isinstance(value, dict | list) else str(value)
        problems.append(Problem(path, rule, _redact(path, shown)))
    return problems


def _redact(path: str, value: str) -> str:
    # Problem lists are printed and returned over HTTP: never echo a secret back.
    return "<redacted>" if ("api_key" in path or "secret" in path) and value else value


def _state_as_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    state = data.get("state")
    return {**data, "state": {"url": state}} if isinstance(state, str) else dict(data)


def load_settings(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load, expand and validate; raises ConfigInvalid listing every problem at once.

    path None means $SKILLWARDEN_CONFIG, else built-in defaults. env None means os.environ.
    overrides (e.g. CLI flags) win over the file and the environment.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if path is None and environ.get(CONFIG_ENV):
        path = Path(environ[CONFIG_ENV])
    raw: dict[str, Any] = {}
    problems: list[Problem] = []
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigInvalid([Problem(str(path), "cannot read file", str(exc))]) from None
        raw, problems = load_yaml_text(text, str(path))
    raw, env_problems = expand_env(raw, environ)
    problems += env_problems
    from_env, origins = env_overrides(environ)
    # Both state shapes as mappings first, so SKILLWARDEN_STATE=redis://... keeps the
    # file's key_prefix (deep_merge would replace a whole mapping with a string).
    layers = [raw, from_env, dict(overrides or {})]
    if any(isinstance(d.get("state"), dict) for d in layers):
        layers = [_state_as_mapping(d) for d in layers]
    merged = deep_merge(deep_merge(layers[0], layers[1]), layers[2])
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigInvalid(problems + _pydantic_problems(exc, origins)) from None
    problems += _semantic_problems(settings)
    if problems:
        raise ConfigInvalid(problems)
    return settings
