"""Circuit breaker per provider: take a failing provider out of rotation for a cool-down.

    closed --N consecutive failures--> open --cool-down elapsed--> half_open (one probe at a time)
    half_open --probe succeeds--> closed;  half_open --probe fails--> open (new cool-down)

- State is per process (not shared across replicas): each replica learns a provider's health
  from its own traffic, which is what decides its own latency.
- A success in any state closes the circuit: the provider answered, whatever we believed.
- The half-open probe slot is a lease: a probe that never reports (its request was cancelled
  and the caller forgot ``abandon()``) frees the slot after ``probe_lease_s``, so a breaker
  can never stay stuck half-open.
- The clock is injectable (monotonic seconds) so tests drive cool-downs without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.settings import ProviderSettings

__all__ = ["BreakerConfig", "BreakerSnapshot", "BreakerState", "Breakers", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """What metrics and the UI show for one provider."""

    provider: str
    state: BreakerState
    consecutive_failures: int
    retry_in_s: float  # seconds until an open circuit lets a probe through (0 otherwise)
    opened_total: int  # times the circuit opened since start-up (a counter for metrics)


class CircuitBreaker:
    __slots__ = (
        "_clock",
        "_failures",
        "_opened_at",
        "_probe_since",
        "_state",
        "cooldown_s",
        "failure_threshold",
        "name",
        "opened_total",
        "probe_lease_s",
    )

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        *,
        clock: Clock = time.monotonic,
        probe_lease_s: float | None = None,
    ) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        # Default lease: a probe slower than this has surely been abandoned or timed out.
        self.probe_lease_s = probe_lease_s if probe_lease_s is not None else max(cooldown_s, 60.0)
        self.opened_total = 0
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_since: float | None = None

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name} {self.state} failures={self._failures}>"

    @property
    def state(self) -> BreakerState:
        """Current state; an open circuit whose cool-down has elapsed reads as half_open."""
        if self._state == "open" and self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return self._state

    def try_acquire(self) -> bool:
        """May a request go to this provider now? In half_open, True takes the one probe slot:
        the caller must then report record_success(), record_failure() or abandon()."""
        if self._state == "closed":
            return True
        now = self._clock()
        if self._state == "open":
            if now - self._opened_at < self.cooldown_s:
                return False
            self._state = "half_open"
        if self._probe_since is not None and now - self._probe_since < self.probe_lease_s:
            return False  # one probe at a time
        self._probe_since = now
        return True

    def record_success(self) -> None:
        self._state = "closed"
        self._failures = 0
        self._probe_since = None

    def record_failure(self) -> None:
        self._failures += 1
        if self._state == "half_open":
            self._open()  # the probe failed: another full cool-down
        elif self._state == "closed" and self._failures >= self.failure_threshold:
            self._open()
        # Already open: late failures of requests sent before it opened change nothing.

    def abandon(self) -> None:
        """The request was given up without a verdict (cancelled): free the probe slot."""
        self._probe_since = None

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._probe_since = None
        self.opened_total += 1

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        retry_in = 0.0
        if state == "open":
            retry_in = max(0.0, self.cooldown_s - (self._clock() - self._opened_at))
        return BreakerSnapshot(self.name, state, self._failures, retry_in, self.opened_total)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failures: int = 5
    cooldown_s: float = 30.0


class Breakers:
    """One CircuitBreaker per provider name, created on first use; survives config reloads
    (configure() changes thresholds, never state)."""

    def __init__(
        self,
        config: Mapping[str, BreakerConfig] | None = None,
        *,
        default: BreakerConfig = BreakerConfig(),
        clock: Clock = time.monotonic,
    ) -> None:
        self._config: dict[str, BreakerConfig] = dict(config or {})
        self._default = default
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    @classmethod
    def from_providers(
        cls, providers: Mapping[str, ProviderSettings], *, clock: Clock = time.monotonic
    ) -> Breakers:
        """From Settings.providers (breaker_failures, breaker_cooldown_s)."""
        return cls(_configs(providers), clock=clock)

    def configure(self, providers: Mapping[str, ProviderSettings]) -> None:
        """A config reload: new thresholds apply at once, open circuits stay open."""
        self._config = _configs(providers)
        for name, breaker in self._breakers.items():
            cfg = self._config.get(name, self._default)
            breaker.failure_threshold, breaker.cooldown_s = cfg.failures, cfg.cooldown_s

    def get(self, provider: str) -> CircuitBreaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            cfg = self._config.get(provider, self._default)
            breaker = CircuitBreaker(provider, cfg.failures, cfg.cooldown_s, clock=self._clock)
            self._breakers[provider] = breaker
        return breaker

    __getitem__ = get

    def snapshot(self) -> dict[str, BreakerSnapshot]:
        """Every provider seen so far, by name (for /metrics and the UI)."""
        return {name: b.snapshot() for name, b in self._breakers.items()}


def _configs(providers: Mapping[str, ProviderSettings]) -> dict[str, BreakerConfig]:
    return {
        n: BreakerConfig(p.breaker_failures, p.breaker_cooldown_s) for n, p in providers.items()
    }
