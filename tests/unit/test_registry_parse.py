"""SKILL.md parsing: delimiters, encodings, the hardened YAML loader; never a traceback."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from skills_registry.parse import MAX_FRONTMATTER_BYTES, display, parse_skill_md


def test_valid_frontmatter_and_body() -> None:
    parsed = parse_skill_md(b"---\nname: demo\ndescription: Does things.\n---\n# Demo\n\nBody.\n")
    assert parsed.problems == ()
    assert parsed.frontmatter == {"name": "demo", "description": "Does things."}
    assert parsed.body == "# Demo\n\nBody."


def test_delimiter_is_line_anchored() -> None:
    parsed = parse_skill_md("---\nname: a\ndescription: a---b\n---\nx\n---\ny\n")
    assert parsed.frontmatter == {"name": "a", "description": "a---b"}
    assert parsed.body == "x\n---\ny"


def test_crlf_line_endings() -> None:
    parsed = parse_skill_md(b"---\r\nname: a\r\ndescription: b\r\n---\r\nbody\r\n")
    assert parsed.problems == ()
    assert parsed.frontmatter == {"name": "a", "description": "b"}


def test_trailing_spaces_after_delimiter_are_accepted() -> None:
    assert parse_skill_md("--- \nname: a\n---  \n").frontmatter == {"name": "a"}


def test_four_dashes_are_not_a_delimiter() -> None:
    parsed = parse_skill_md("----\nname: a\n----\n")
    assert parsed.frontmatter is None
    assert parsed.problems[0].rule.startswith("must start with YAML frontmatter")


def test_bom_is_reported_and_the_rest_still_parsed() -> None:
    parsed = parse_skill_md(b"\xef\xbb\xbf---\nname: a\n---\n")
    assert [p.rule for p in parsed.problems] == ["must not start with a byte order mark (BOM)"]
    assert parsed.frontmatter == {"name": "a"}


def test_invalid_utf8_names_the_byte_and_offset() -> None:
    parsed = parse_skill_md(b"---\nname: caf\xe9\n---\n")
    assert parsed.problems[0].field == "SKILL.md"
    assert parsed.problems[0].value == "byte 0xe9 at offset 13"


def test_alias_bomb_is_refused_before_expansion() -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    parsed = parse_skill_md("---\n" + "\n".join(lines) + "\n---\n")
    assert parsed.frontmatter is None
    assert parsed.problems[0].rule == "YAML anchors are not allowed"


def test_duplicate_keys_at_any_depth() -> None:
    assert parse_skill_md("---\na: 1\na: 2\n---\n").problems[0].rule == "duplicate key"
    nested = parse_skill_md("---\nm:\n  k: 1\n  k: 2\n---\n")
    assert nested.problems[0].rule == "duplicate key"
    assert nested.problems[0].value == "k"


def test_merge_keys_and_complex_keys_are_refused() -> None:
    assert "merge keys" in parse_skill_md("---\n<<: {a: 1}\n---\n").problems[0].rule
    assert (
        parse_skill_md("---\n? [a]\n: 1\n---\n").problems[0].rule == "mapping keys must be scalars"
    )


def test_unsafe_tags_are_not_constructed() -> None:
    parsed = parse_skill_md("---\nx: !!python/object/apply:os.system ['true']\n---\n")
    assert parsed.frontmatter is None
    assert "is not valid YAML" in parsed.problems[0].rule


def test_yaml_scalars_are_not_coerced_to_strings() -> None:
    parsed = parse_skill_md("---\nv: 1.0\nd: 2024-01-01\nb: yes\n---\n")
    assert parsed.frontmatter is not None
    assert parsed.frontmatter["v"] == 1.0
    assert parsed.frontmatter["b"] is True


def test_deep_nesting_is_a_problem_not_a_recursion_error() -> None:
    parsed = parse_skill_md("---\na: " + "[" * 50_000 + "\n---\n")
    assert parsed.frontmatter is None
    assert "nesting deeper" in parsed.problems[0].rule


def test_oversized_frontmatter_is_not_parsed() -> None:
    parsed = parse_skill_md("---\ndescription: " + "x" * MAX_FRONTMATTER_BYTES + "\n---\n")
    assert parsed.problems[0].field == "frontmatter"
    assert parsed.problems[0].rule == f"must be at most {MAX_FRONTMATTER_BYTES} bytes"


def test_yaml_error_reports_the_line() -> None:
    parsed = parse_skill_md("---\nname: a\ndescription: [x\n---\n")
    assert "(line " in parsed.problems[0].rule


def test_display_is_bounded() -> None:
    assert len(display("x" * 10_000)) == 80
    nested: list[object] = []
    for _ in range(10_000):
        nested = [nested]
    assert len(display(nested)) <= 80
    assert display({"a": 1}) == "{'a': 1}"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    parse_skill_md(raw)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_frontmatter_text_never_raises(text: str) -> None:
    parsed = parse_skill_md("---\n" + text + "\n---\nbody")
    assert parsed.frontmatter is None or isinstance(parsed.frontmatter, dict)
