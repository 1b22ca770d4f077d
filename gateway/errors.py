"""One error model: GatewayError(code, status, message, rule), and the admin API's JSON body.

Client wire formats render GatewayError in their own shape (gateway/formats/*/errors.py);
the admin API and the gateway's own endpoints use admin_error_body().
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

from skills_registry.manifest import Problem

__all__ = ["ERROR_CODES", "ErrorCode", "GatewayError", "admin_error_body"]

ErrorCode = Literal[
    # PRODUCT.md's list: these reach agents, in their client's error format.
    "unknown_skill",
    "skill_not_permitted",
    "tool_not_allowed",
    "prompt_blocked",
    "budget_exceeded",
    "rate_limited",
    "no_provider_available",
    "invalid_request",
    "payload_too_large",
    "unauthenticated",
    # Added by Skillwarden to PRODUCT.md's list (docs/budgets-and-routing.md): the budget
    # store (Redis) cannot be reached, so a budgeted request is refused (503, retryable).
    "budget_unavailable",
    # Admin API and gateway-internal.
    "forbidden",
    "not_found",
    "method_not_allowed",
    "unsupported_media_type",
    "skill_invalid",
    "conflict",
    "api_error",
]
ERROR_CODES: frozenset[str] = frozenset(get_args(ErrorCode))


class GatewayError(Exception):
    """A refusal with a stable code and HTTP status; `rule` names the rule that refused."""

    def __init__(
        self,
        code: ErrorCode,
        status: int,
        message: str,
        rule: str | None = None,
        *,
        problems: Sequence[Problem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.status = status
        self.message = message
        self.rule = rule
        self.problems = tuple(problems)
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"GatewayError({self.code!r}, {self.status}, {self.message!r}, rule={self.rule!r})"


def admin_error_body(error: GatewayError) -> dict[str, Any]:
    """{"error": {"code", "message", "problems": [{"field", "rule", "value"}]}} (+ "rule")."""
    body: dict[str, Any] = {
        "code": error.code,
        "message": error.message,
        "problems": [p.as_dict() for p in error.problems],
    }
    if error.rule is not None:
        body["rule"] = error.rule
    return {"error": body}
