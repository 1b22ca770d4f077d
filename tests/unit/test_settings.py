"""gateway.settings: defaults, ${ENV} expansion, SKILLWARDEN_* overrides, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import ConfigInvalid, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "skillwarden.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path | None, env: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigInvalid) as info:
        load_settings(path, env or {})
    return [(p.field, p.rule, p.value) for p in info.value.problems]


def test_defaults_are_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, {})
    assert s.server.host == "127.0.0.1" and s.server.port == 8080
    assert s.state_url == "memory"
    assert s.data_dir == Path(".skillwarden")
    assert s.storage_url == f"sqlite:///{tmp_path / '.skillwarden' / 'skillwarden.db'}"


def test_storage_follows_data_dir(tmp_path: Path) -> None:
    s = load_settings(None, {}, {"data_dir": str(tmp_path / "d")})
    assert s.storage_url == f"sqlite:///{tmp_path / 'd' / 'skillwarden.db'}"


def test_env_expansion_and_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "providers:\n"
        "  anthropic: {type: anthropic, api_key: '${ANTHROPIC_KEY}'}\n"
        "  local: {type: openai_compatible, base_url: 'http://${HOST:-localhost}:8000/v1'}\n"
        "server: {host: '$${literal}'}\n",
    )
    s = load_settings(path, {"ANTHROPIC_KEY": "sk-ant-1"})
    key = s.providers["anthropic"].api_key
    assert key is not None and key.get_secret_value() == "sk-ant-1"
    assert s.providers["local"].base_url == "http://localhost:8000/v1"
    assert s.server.host == "${literal}"
    assert "sk-ant-1" not in repr(s)  # secrets stay out of logs and reprs


def test_missing_env_var_names_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, "providers:\n  a: {type: openai, api_key: '${NOPE}'}\n")
    assert problems_of(path) == [("providers.a.api_key", "environment variable is not set", "NOPE")]


def test_env_overrides_nest_with_double_underscore(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 8000, host: 0.0.0.0}\n")
    env = {
        "SKILLWARDEN_SERVER__PORT": "9000",
        "SKILLWARDEN_STATE": "redis://127.0.0.1:6379/0",
        "SKILLWARDEN_GUARD__DENY": '["(?i)ignore previous"]',
        "SKILLWARDEN_CONFIG": str(path),  # the file to read, not an override
    }
    s = load_settings(None, env)
    assert s.server.port == 9000 and s.server.host == "0.0.0.0"
    assert s.state_url == "redis://127.0.0.1:6379/0"
    assert s.guard.deny == ["(?i)ignore previous"]


def test_explicit_overrides_win_over_env() -> None:
    s = load_settings(None, {"SKILLWARDEN_SERVER__PORT": "9000"}, {"server": {"port": 9001}})
    assert s.server.port == 9001


def test_every_problem_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "server: {port: 99999, wokers: 2}\n"
        "storage: mysql://x\n"
        "state: memcached\n"
        "guard: {deny: ['(unclosed', 'fine']}\n"
        "skills:\n"
        "  code-review: {mode: block, budgets: [{window: week}], guard: {allow: ['[']}}\n"
        "providers: {a: {type: openai, api_key: '${MISSING}'}}\n"
        "bogus: 1\n",
    )
    found = problems_of(path, {"SKILLWARDEN_SERVER__WORKERS": "many"})
    fields = [f for f, _, _ in found]
    for expected in (
        "providers.a.api_key",
        "server.port",
        "server.wokers",
        "server.workers (from SKILLWARDEN_SERVER__WORKERS)",
        "storage",
        "state",
        "guard.deny.0",
        "skills.code-review.mode",
        "skills.code-review.budgets.0.window",
        "skills.code-review.guard.allow.0",
        "bogus",
    ):
        assert expected in fields, (expected, found)
    regex = next(p for p in found if p[0] == "guard.deny.0")
    assert regex[1].startswith("invalid regular expression") and regex[2] == "(unclosed"


def test_invalid_regex_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, "audit: {redact: ['sk-[a-z']}\n")
    [(field, rule, value)] = problems_of(path)
    assert field == "audit.redact.0" and "invalid regular expression" in rule and value == "sk-[a-z"


def test_cross_field_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "routes: [{provider: nowhere}]\n"
        "skills:\n  code-review: {no_skill: deny, routes: [{provider: demo}]}\n",
    )
    found = problems_of(path)
    assert ("routes.0.provider", "unknown provider", "nowhere") in found
    assert ("skills.code-review.no_skill", "allowed only under '*'", "code-review") in found


@pytest.mark.parametrize(
    ("text", "rule_part"),
    [
        ("a: &x 1\nb: *x\n", "anchors and aliases are not allowed"),
        ("server: {port: 1}\nserver: {port: 2}\n", "duplicate"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("server: [unclosed\n", "invalid YAML"),
    ],
)
def test_unsafe_or_broken_yaml(tmp_path: Path, text: str, rule_part: str) -> None:
    found = problems_of(write(tmp_path, text))
    assert any(rule_part in rule or rule_part in value for _, rule, value in found), found


def test_unreadable_file(tmp_path: Path) -> None:
    [(field, rule, _)] = problems_of(tmp_path / "absent.yaml")
    assert field.endswith("absent.yaml") and rule == "cannot read file"


def test_api_key_values_are_redacted_in_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "providers: {a: {type: openai, api_key: [sk-secret]}}\n")
    found = problems_of(path, {"SKILLWARDEN_PROVIDERS__B__API_KEY": "sk-other"})
    assert all("sk-" not in value for _, _, value in found), found


def test_short_consumer_key_is_refused() -> None:
    with pytest.raises(ConfigInvalid) as info:
        load_settings(None, {}, {"consumers": {"ci": {"api_keys": ["short", "x" * 16]}}})
    [problem] = info.value.problems
    assert problem.field == "consumers.ci.api_keys.0" and problem.value == "<redacted>"
    assert problem.rule == "must be at least 16 characters"


def test_example_config_is_valid() -> None:
    s = load_settings(REPO / "skillwarden.example.yaml", {"ANTHROPIC_API_KEY": "sk-ant-x"})
    assert isinstance(s, Settings)
    assert "code-review" in s.skills and "*" in s.skills


def test_hook_variables_are_not_config_keys() -> None:
    """The hook's SKILLWARDEN_URL/_API_KEY/_SKILL must not make `serve` refuse to start."""
    env = {
        "SKILLWARDEN_URL": "http://127.0.0.1:8080",
        "SKILLWARDEN_API_KEY": "sk-sw-x",
        "SKILLWARDEN_SKILL": "code-review",
        "SKILLWARDEN_SERVER__PORT": "9001",
    }
    settings = load_settings(None, env=env)
    assert settings.server.port == 9001


def test_state_as_url_or_mapping(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, "state: redis://r:6379/0\n"), {})
    assert s.state_url == "redis://r:6379/0"
    assert (s.state.key_prefix, s.state.timeout_s, s.state.fail_open) == (
        "skillwarden:",
        1.0,
        False,
    )
    text = (
        "state: {url: 'redis://r:6379/1', key_prefix: 'sw-a:', timeout_s: 0.5, fail_open: true}\n"
    )
    s = load_settings(write(tmp_path, text), {})
    assert s.state.url == "redis://r:6379/1" and s.state.key_prefix == "sw-a:"
    assert s.state.timeout_s == 0.5 and s.state.fail_open is True
    # SKILLWARDEN_STATE=<url> replaces the URL only; the file's other state keys stay.
    s = load_settings(write(tmp_path, text), {"SKILLWARDEN_STATE": "memory"})
    assert s.state.url == "memory" and s.state.key_prefix == "sw-a:" and s.state.fail_open


def test_state_mapping_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "state: {url: memcached://x, timeout_s: 0, colour: red}\n")
    fields = {f for f, _, _ in problems_of(path)}
    assert fields == {"state.url", "state.timeout_s", "state.colour"}


def test_default_max_tokens_per_skill(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "skills:\n  '*': {default_max_tokens: 2048}\n  big: {default_max_tokens: 16000}\n",
    )
    s = load_settings(path, {})
    assert s.default_max_tokens("big") == 16000
    assert s.default_max_tokens("other") == 2048 and s.default_max_tokens(None) == 2048
    assert Settings().default_max_tokens("x") == 4096
    bad = write(tmp_path, "skills: {a: {default_max_tokens: 0}}\n")
    assert [f for f, _, _ in problems_of(bad)] == ["skills.a.default_max_tokens"]


def test_patterns_re2_cannot_run_are_all_refused_at_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "guard: {deny: ['secret(?=\\d)', ok]}\n"
        "skills:\n  code-review: {guard: {allow: ['(\\w)\\1']}}\n"
        "audit: {redact: ['(?<=key=)\\w+']}\n",
    )
    found = problems_of(path, {"SKILLWARDEN_GUARD__ALLOW": '["(?>a+)b"]'})
    why = "(patterns run on RE2, linear time)"
    assert sorted(found) == sorted(
        [
            (
                "guard.allow.0 (from SKILLWARDEN_GUARD__ALLOW)",
                f"atomic groups are not supported {why}",
                "(?>a+)b",
            ),
            ("guard.deny.0", f"lookahead is not supported {why}", "secret(?=\\d)"),
            (
                "skills.code-review.guard.allow.0",
                f"backreferences are not supported {why}",
                "(\\w)\\1",
            ),
            ("audit.redact.0", f"lookbehind is not supported {why}", "(?<=key=)\\w+"),
        ]
    ), found
