"""Stage 1: who is calling. Gateway keys only; client credentials never go upstream.

Rule for clients that send both `x-api-key` and `Authorization: Bearer` (Claude Code does when
ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN are both set): fail closed, both must be the same
key. Two different keys could belong to two consumers, and picking one silently would let a
request run under an identity the client did not mean.
"""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.pipeline.context import RequestContext
from gateway.runtime import ConfigKey, Runtime

__all__ = ["authenticate", "presented_key"]


def _refuse(message: str) -> GatewayError:
    return GatewayError("unauthenticated", 401, message, rule="authentication")


def presented_key(headers: dict[str, str]) -> str:
    """The one key the client presents, or GatewayError 401."""
    api_key = headers.get("x-api-key")
    auth = headers.get("authorization")
    bearer = None
    if auth is not None:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _refuse("the Authorization header must be 'Bearer <gateway API key>'")
        bearer = token.strip()
    if api_key is not None and bearer is not None and api_key.strip() != bearer:
        raise _refuse("x-api-key and Authorization: Bearer carry different keys; send one key")
    key = (api_key or "").strip() or bearer
    if not key:
        raise _refuse(
            "missing gateway API key: send x-api-key or Authorization: Bearer <key> "
            "(a Skillwarden key, not a provider key)"
        )
    return key


async def authenticate(ctx: RequestContext, rt: Runtime) -> None:
    """Set ctx.consumer and ctx.consumer_skills, or refuse with 401 unauthenticated."""
    found = await rt.keys.lookup(presented_key(ctx.headers))
    if found is None:
        raise _refuse("invalid gateway API key (unknown or revoked)")
    if isinstance(found, ConfigKey):
        ctx.consumer, ctx.consumer_skills = found.consumer, found.skills
        return
    if found.kind != "agent":
        raise _refuse("admin keys manage the gateway; agents must use an agent key")
    ctx.consumer = found.consumer
    # A stored key's own list wins; else the consumer's entitlement from settings, if any.
    ctx.consumer_skills = (
        found.skills if found.skills is not None else rt.keys.consumer_skills(found.consumer)
    )
