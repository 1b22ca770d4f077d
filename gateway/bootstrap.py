"""First start on embedded defaults: data dir, sample skills published, admin and agent keys.

Idempotent: later starts publish nothing new (same digests) and create no keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sample_skills
from gateway.demo import BANNER, demo_provider_names
from gateway.settings import Settings
from gateway.state.keys import ApiKeyStore
from skills_registry.manifest import SkillInvalid
from skills_registry.publish import publish_skill
from skills_registry.store import SkillStore

__all__ = ["BootstrapReport", "bootstrap", "prepare_data_dir", "sample_skill_dirs"]

log = logging.getLogger("skillwarden.bootstrap")
SAMPLE_PUBLISHER = "skillwarden-samples"
Say = Callable[[str], None]
# The samples ship inside the package (pyproject package-data), so this works when installed too.
SAMPLES_ROOT = Path(sample_skills.__file__).parent


@dataclass
class BootstrapReport:
    published: list[str] = field(default_factory=list)  # name@version newly stored
    unchanged: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # Plaintext exists only here, in memory, on the start that created the key.
    admin_key: str | None = None
    agent_key: str | None = None


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory, and the SQLite file's folder when storage is elsewhere."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.storage_url.startswith("sqlite:///"):
        path = settings.storage_url.removeprefix("sqlite:///").split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def sample_skill_dirs(root: Path) -> list[Path]:
    """Every sample skill folder (a directory holding SKILL.md), sorted by name."""
    return sorted(p for p in root.iterdir() if (p / "SKILL.md").is_file())


async def bootstrap(
    settings: Settings, skills: SkillStore, keys: ApiKeyStore, say: Say
) -> BootstrapReport:
    """Publish the samples and create missing keys; `say` prints to the operator's terminal."""
    report = BootstrapReport()
    if settings.admin.publish_sample_skills:
        await _publish_samples(skills, report)
        if report.published:
            say("Published the sample skills: " + ", ".join(report.published))
    if settings.admin.create_keys:
        await _create_keys(keys, report, say)
    if demo_provider_names(settings):
        _demo_banner(say)
    elif not any(p.api_key is not None for p in settings.providers.values()):
        _warn_no_provider(say)
    return report


async def _publish_samples(skills: SkillStore, report: BootstrapReport) -> None:
    for folder in sample_skill_dirs(SAMPLES_ROOT):
        try:
            result = await publish_skill(skills, folder, publisher=SAMPLE_PUBLISHER)
        except SkillInvalid as exc:
            # A broken sample must not stop the gateway; it is logged with its problems.
            log.error("sample skill %s rejected: %s", folder.name, exc.problems)
            report.failed.append(folder.name)
            continue
        target = report.published if result.status == "published" else report.unchanged
        target.append(result.version.ref)


async def _create_keys(keys: ApiKeyStore, report: BootstrapReport, say: Say) -> None:
    if await keys.count("admin") == 0:
        _, report.admin_key = await keys.create("admin", "admin", None)
    if await keys.count("agent") == 0:
        _, report.agent_key = await keys.create("agent", "default-agent", None)
    if report.admin_key or report.agent_key:
        lines = ["", "=" * 72, "API keys created. They are shown ONCE and stored only as hashes:"]
        if report.admin_key:
            lines.append(f"  admin key (POST /admin/skills ...):  {report.admin_key}")
        if report.agent_key:
            lines.append(f"  agent key (Authorization: Bearer):   {report.agent_key}")
        lines += ["Save them now; they cannot be shown again.", "=" * 72, ""]
        say("\n".join(lines))


def _warn_no_provider(say: Say) -> None:
    say(
        "\n".join(
            [
                "",
                "!" * 72,
                "WARNING: no LLM provider key is configured, so agent requests cannot be",
                "forwarded. Add one under `providers:` in skillwarden.yaml, e.g.",
                "  providers: {anthropic: {type: anthropic, api_key: ${ANTHROPIC_API_KEY}}}",
                "or set SKILLWARDEN_PROVIDERS__ANTHROPIC__TYPE=anthropic and",
                "SKILLWARDEN_PROVIDERS__ANTHROPIC__API_KEY=...",
                "No key yet? Try the built-in demo provider, a scripted model that makes",
                "allowed and denied tool calls:  `skillwarden demo`  (one session, printed),",
                "or  SKILLWARDEN_PROVIDERS__DEMO__TYPE=demo skillwarden serve",
                "!" * 72,
                "",
            ]
        )
    )


def _demo_banner(say: Say) -> None:
    # Loud on purpose: nobody should mistake the scripted answers for a real model's.
    say("\n".join(["", "#" * 72, BANNER, "(model skillwarden-demo; docs/demo.md)", "#" * 72, ""]))
