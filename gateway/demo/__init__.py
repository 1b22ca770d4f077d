"""The built-in demo provider: a clearly labelled scripted model (``skillwarden-demo``) that
answers in the Anthropic and OpenAI wire formats with text and tool calls, so a newcomer can
watch allowed and denied tool calls and the audit log without a provider key. docs/demo.md."""

from gateway.demo.model import MODEL
from gateway.demo.server import DemoServer, demo_provider_names, demo_upstream

__all__ = ["BANNER", "MODEL", "DemoServer", "demo_provider_names", "demo_upstream"]

BANNER = "DEMO PROVIDER: responses are scripted, no real model"
