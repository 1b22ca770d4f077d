"""Stage 3: the prompt guard (seed: APISIX ai-prompt-guard), global then per skill.

Which content is checked: the user role's (or every role's, with `roles: all`), in the latest
such message only unless `whole_history`. Deny patterns refuse on any match; allow patterns,
when configured, must match the checked content. Patterns run on RE2 (gateway/patterns.py):
a search costs time linear in the text, whatever the pattern, so a crafted prompt cannot
stall the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.errors import GatewayError
from gateway.formats.canonical import Json
from gateway.patterns import encode
from gateway.pipeline.context import RequestContext
from gateway.runtime import CompiledGuard, Runtime

__all__ = ["guard_prompt", "guarded_texts"]


def guard_prompt(ctx: RequestContext, rt: Runtime) -> None:
    """403 prompt_blocked when a guard refuses the request's content."""
    assert ctx.body is not None
    guards = [("guard", rt.guard)]
    if ctx.resolved is not None and ctx.resolved.policy.guard is not None:
        guards.append((f"skills.{ctx.skill}.guard", ctx.resolved.policy.guard))
    for where, guard in guards:
        if guard.allow or guard.deny:
            # Encoded once for all the guard's patterns (RE2 matches UTF-8 bytes).
            texts = [encode(text) for text in guarded_texts(ctx.body, guard)]
            _check(ctx, where, guard, texts)


def _check(ctx: RequestContext, where: str, guard: CompiledGuard, texts: list[bytes]) -> None:
    for pattern in guard.deny:
        if any(pattern.search(text) for text in texts):
            raise GatewayError(
                "prompt_blocked",
                403,
                f"prompt blocked for skill '{ctx.skill}': content matches the deny pattern "
                f"{pattern.pattern!r} ({where}.deny)",
                rule=f"{where}.deny: {pattern.pattern}",
            )
    if guard.allow and not any(p.search(text) for p in guard.allow for text in texts):
        raise GatewayError(
            "prompt_blocked",
            403,
            f"prompt blocked for skill '{ctx.skill}': content matches none of the allow "
            f"patterns ({where}.allow)",
            rule=f"{where}.allow",
        )


def guarded_texts(body: Json, guard: CompiledGuard) -> Iterator[str]:
    """The texts a guard reads: both formats keep them under messages[].content."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    if guard.roles == "all":
        system = body.get("system")  # Anthropic's top-level system prompt
        if system is not None:
            messages.insert(0, {"role": "system", "content": system})
    else:
        messages = [m for m in messages if m.get("role") == "user"]
    if not guard.whole_history:
        messages = messages[-1:]
    for message in messages:
        yield from _texts(message.get("content"))


def _texts(content: object) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(text := part.get("text"), str):
                yield text
            elif part.get("type") == "tool_result":  # results can carry injected text
                yield from _texts(part.get("content"))
