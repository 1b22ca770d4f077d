"""CircuitBreaker and Breakers with a fake clock: open, cool-down, one probe, close/reopen."""

from __future__ import annotations

import pytest

from gateway.settings import ProviderSettings
from gateway.upstream.breaker import Breakers, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def tripped(clock: FakeClock, failures: int = 3, cooldown: float = 10.0) -> CircuitBreaker:
    b = CircuitBreaker("p", failures, cooldown, clock=clock)
    for _ in range(failures):
        assert b.try_acquire()
        b.record_failure()
    assert b.state == "open"
    return b


def test_opens_after_n_consecutive_failures(clock: FakeClock) -> None:
    b = CircuitBreaker("p", 3, 10.0, clock=clock)
    for _ in range(2):
        b.record_failure()
    assert b.state == "closed" and b.try_acquire()
    b.record_failure()
    assert b.snapshot().state == "open"
    assert not b.try_acquire()
    assert b.snapshot().opened_total == 1


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    b = CircuitBreaker("p", 3, 10.0, clock=clock)
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state == "closed"


def test_open_until_cooldown_then_half_open_with_one_probe(clock: FakeClock) -> None:
    b = tripped(clock)
    clock.now += 9.9
    assert not b.try_acquire()
    assert b.snapshot().retry_in_s == pytest.approx(0.1)
    clock.now += 0.1
    assert b.state == "half_open"
    assert b.try_acquire()  # the probe
    assert not b.try_acquire()  # a second request while the probe is out
    assert b.state == "half_open"


def test_probe_success_closes(clock: FakeClock) -> None:
    b = tripped(clock)
    clock.now += 10
    assert b.try_acquire()
    b.record_success()
    assert b.state == "closed"
    assert b.try_acquire() and b.try_acquire()
    assert b.snapshot().consecutive_failures == 0


def test_probe_failure_reopens_for_a_full_cooldown(clock: FakeClock) -> None:
    b = tripped(clock)
    clock.now += 10
    assert b.try_acquire()
    b.record_failure()
    assert b.state == "open"
    assert b.snapshot().opened_total == 2
    clock.now += 9
    assert not b.try_acquire()
    clock.now += 1
    assert b.try_acquire()


def test_abandoned_probe_frees_the_slot(clock: FakeClock) -> None:
    b = tripped(clock)
    clock.now += 10
    assert b.try_acquire()
    b.abandon()
    assert b.try_acquire()


def test_a_forgotten_probe_expires_after_its_lease(clock: FakeClock) -> None:
    b = CircuitBreaker("p", 1, 5.0, clock=clock, probe_lease_s=20.0)
    b.record_failure()
    clock.now += 5
    assert b.try_acquire()
    clock.now += 19
    assert not b.try_acquire()
    clock.now += 1
    assert b.try_acquire()


def test_late_failures_while_open_do_not_extend_the_cooldown(clock: FakeClock) -> None:
    b = tripped(clock)
    clock.now += 5
    b.record_failure()  # a request sent before the circuit opened
    clock.now += 5
    assert b.try_acquire()


def test_success_while_open_closes(clock: FakeClock) -> None:
    b = tripped(clock)
    b.record_success()  # a request sent before it opened came back fine
    assert b.state == "closed"


def test_invalid_thresholds() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker("p", 0, 1.0)
    with pytest.raises(ValueError):
        CircuitBreaker("p", 1, 0.0)


def test_breakers_per_provider_from_settings_and_reconfigure(clock: FakeClock) -> None:
    providers = {
        "a": ProviderSettings(type="anthropic", breaker_failures=1, breaker_cooldown_s=3.0),
        "b": ProviderSettings(type="openai"),
    }
    breakers = Breakers.from_providers(providers, clock=clock)
    a, b = breakers.get("a"), breakers["b"]
    assert breakers.get("a") is a
    assert (a.failure_threshold, a.cooldown_s) == (1, 3.0)
    assert (b.failure_threshold, b.cooldown_s) == (5, 30.0)
    a.record_failure()
    assert breakers.snapshot()["a"].state == "open"
    assert breakers.snapshot()["b"].state == "closed"
    other = breakers.get("unknown")  # e.g. demo: defaults
    assert other.failure_threshold == 5
    providers["a"] = ProviderSettings(type="anthropic", breaker_failures=2, breaker_cooldown_s=9.0)
    breakers.configure(providers)
    assert breakers.get("a") is a and a.state == "open"  # state survives a reload
    assert (a.failure_threshold, a.cooldown_s) == (2, 9.0)
    assert breakers.snapshot()["a"].retry_in_s == pytest.approx(9.0)
