"""USD cost of one request from configured prices (``providers.<name>.prices``).

Prices are per million tokens: ``{model: {input_per_mtok, output_per_mtok}}``. The model is the
one the provider billed for, i.e. the upstream model after aliases. A price key may be a glob
(``claude-sonnet-4-*``) so dated model ids share one entry; an exact key wins over a glob.
No price for the model: None (the audit record then has no cost, rather than a wrong one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from gateway.settings import ProviderSettings

__all__ = ["Price", "PriceBook", "cost_usd"]

_PER = 1_000_000.0


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float:
        # Negative counts come from broken usage reports: clamped, never credited.
        tin = max(0, input_tokens or 0)
        tout = max(0, output_tokens or 0)
        return round((tin * self.input_per_mtok + tout * self.output_per_mtok) / _PER, 10)


def _price(entry: Mapping[Literal["input_per_mtok", "output_per_mtok"], float]) -> Price:
    return Price(entry.get("input_per_mtok", 0.0), entry.get("output_per_mtok", 0.0))


class PriceBook:
    """Prices of every provider, resolved once per Settings; lookups are dict hits."""

    def __init__(self, providers: Mapping[str, ProviderSettings]) -> None:
        self._exact: dict[tuple[str, str], Price] = {}
        self._globs: dict[str, list[tuple[str, Price]]] = {}
        for name, p in providers.items():
            for model, entry in p.prices.items():
                if any(c in model for c in "*?["):
                    self._globs.setdefault(name, []).append((model, _price(entry)))
                else:
                    self._exact[(name, model)] = _price(entry)

    def price(self, provider: str, model: str | None) -> Price | None:
        if model is None:
            return None
        found = self._exact.get((provider, model))
        if found is None:
            for pattern, price in self._globs.get(provider, ()):
                if fnmatchcase(model, pattern):
                    return price  # first glob in config order
        return found

    def cost(
        self,
        provider: str | None,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
    ) -> float | None:
        """USD for one request, or None without a price or without any usage."""
        if provider is None or (input_tokens is None and output_tokens is None):
            return None
        price = self.price(provider, model)
        return None if price is None else price.cost(input_tokens, output_tokens)


def cost_usd(
    provider: ProviderSettings,
    model: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
) -> float | None:
    """One-off form of PriceBook.cost for a single provider's settings."""
    return PriceBook({"p": provider}).cost("p", model, input_tokens, output_tokens)
