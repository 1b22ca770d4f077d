"""USD cost from providers.<name>.prices."""

from __future__ import annotations

import pytest

from gateway.settings import ProviderSettings
from gateway.upstream.cost import Price, PriceBook, cost_usd

PRICES = {
    "claude-sonnet-4-5": {"input_per_mtok": 3.0, "output_per_mtok": 15.0},
    "claude-haiku-*": {"input_per_mtok": 1.0, "output_per_mtok": 5.0},
    "claude-haiku-4-5-special": {"input_per_mtok": 0.5},
}


@pytest.fixture
def book() -> PriceBook:
    return PriceBook(
        {
            "anthropic": ProviderSettings(type="anthropic", prices=PRICES),  # type: ignore[arg-type]
            "local": ProviderSettings(type="openai_compatible"),
        }
    )


def test_cost_from_per_million_prices(book: PriceBook) -> None:
    assert book.cost("anthropic", "claude-sonnet-4-5", 1_000_000, 0) == 3.0
    assert book.cost("anthropic", "claude-sonnet-4-5", 2000, 500) == pytest.approx(0.0135)


def test_glob_keys_and_exact_wins(book: PriceBook) -> None:
    assert book.cost("anthropic", "claude-haiku-4-5-20251001", 1_000_000, 1_000_000) == 6.0
    assert book.cost("anthropic", "claude-haiku-4-5-special", 1_000_000, 1_000_000) == 0.5


def test_none_without_price_or_usage(book: PriceBook) -> None:
    assert book.cost("anthropic", "gpt-4o", 10, 10) is None
    assert book.cost("local", "llama3", 10, 10) is None
    assert book.cost("nope", "claude-sonnet-4-5", 10, 10) is None
    assert book.cost(None, "claude-sonnet-4-5", 10, 10) is None
    assert book.cost("anthropic", None, 10, 10) is None
    assert book.cost("anthropic", "claude-sonnet-4-5", None, None) is None


def test_partial_and_broken_usage_is_clamped(book: PriceBook) -> None:
    assert book.cost("anthropic", "claude-sonnet-4-5", 1_000_000, None) == 3.0
    assert book.cost("anthropic", "claude-sonnet-4-5", -5, 1_000_000) == 15.0
    assert Price(1.0, 2.0).cost(None, None) == 0.0


def test_cost_usd_one_off() -> None:
    p = ProviderSettings(
        type="openai", prices={"gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10}}
    )
    assert cost_usd(p, "gpt-4o", 1000, 1000) == pytest.approx(0.0125)
    assert cost_usd(p, "gpt-4o-mini", 1000, 1000) is None
