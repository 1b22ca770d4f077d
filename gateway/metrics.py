"""prometheus-client collectors, labelled by skill (and provider, decision where it applies).

Collectors live on the default registry, which `/metrics` serves. Keep label values bounded:
skill names come from the registry, never from free client input.
"""

from __future__ import annotations

from prometheus_client import Counter

__all__ = ["BUDGET_STORE_UNAVAILABLE"]

# outcome: refused (fail closed, 503), admitted (operator opted into fail-open, unmetered),
# unsettled (settle/release could not reach the store; the reservation stays charged).
BUDGET_STORE_UNAVAILABLE = Counter(
    "skillwarden_budget_store_unavailable",
    "Budget checks that could not reach the counter store, by skill and outcome",
    ["skill", "outcome"],
)
