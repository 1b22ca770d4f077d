"""Where settings come from: a safe YAML file, ${ENV} references and SKILLWARDEN_* overrides.

Pure functions over an explicit environment mapping; only gateway/settings.py passes os.environ in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson
import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from skills_registry.manifest import Problem

ENV_PREFIX = "SKILLWARDEN_"
# Read by load_settings itself, so it is not a config override.
CONFIG_ENV = "SKILLWARDEN_CONFIG"
# Variables of the client side (hook command) and the config path itself: never config keys,
# so a shell that sets them for `skillwarden hook` can still run `skillwarden serve`.
CLIENT_ENV = frozenset({CONFIG_ENV, "SKILLWARDEN_URL", "SKILLWARDEN_API_KEY", "SKILLWARDEN_SKILL"})
# ${NAME} or ${NAME:-default}; $${ escapes a literal "${".
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors/aliases (alias bombs) and duplicate mapping keys."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.MarkedYAMLError(
                None, None, "anchors and aliases are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict) or key in seen:
                raise ConstructorError(
                    None, None, f"duplicate or unhashable key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str, source: str) -> tuple[dict[str, Any], list[Problem]]:
    """Parse one YAML document into a mapping; problems instead of exceptions."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        return {}, [Problem(source, "invalid YAML", _one_line(str(exc)))]
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return {}, [Problem(source, "the file must be a YAML mapping", type(data).__name__)]
    return data, []


def _one_line(text: str) -> str:
    return " ".join(text.split())


def expand_env(data: Any, env: Mapping[str, str], path: str = "") -> tuple[Any, list[Problem]]:
    """Replace ${NAME} in every string value; a missing variable is a problem naming the path."""
    problems: list[Problem] = []
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            out[key], found = expand_env(value, env, _join(path, str(key)))
            problems += found
        return out, problems
    if isinstance(data, list):
        items = []
        for index, value in enumerate(data):
            item, found = expand_env(value, env, _join(path, str(index)))
            items.append(item)
            problems += found
        return items, problems
    if not isinstance(data, str) or "$" not in data:
        return data, problems

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(Problem(path or "<root>", "environment variable is not set", name))
        return ""

    return _ENV_REF.sub(substitute, data), problems


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """SKILLWARDEN_SERVER__PORT=9000 -> {"server": {"port": "9000"}}, plus path -> variable name.

    A value that starts with "[" or "{" is parsed as JSON so lists and maps can be overridden.
    """
    tree: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in CLIENT_ENV:
            continue
        keys = [part.lower() for part in var[len(ENV_PREFIX) :].split("__")]
        if not all(keys):
            continue
        raw = env[var]
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = raw  # left as a string: validation then names the field
        node = tree
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[keys[-1]] = value
        origins[".".join(keys)] = var
    return tree, origins


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Return base with top laid over it; mappings merge, everything else replaces."""
    merged = dict(base)
    for key, value in top.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged
