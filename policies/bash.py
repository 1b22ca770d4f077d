"""Split a Bash command into simple commands with tree-sitter-bash, failing closed (pure).

``split_command`` returns every simple command (its words joined by one space, as the model
wrote them: quotes kept, no expansion) and every output-redirection target, or a reason to deny.
The enforcer then requires **every** simple command to match some ``Bash(...)`` rule and every
target to match an ``Edit(...)`` rule.

Understood and split: ``&&``, ``||``, ``;``, ``|``, ``|&``, ``&``, newlines, ``( ... )`` subshells,
``{ ...; }`` groups, ``!`` negation, ``if``/``while``/``until`` bodies and conditions, ``for x in
...`` loops (lower-case loop variable only: ``for PATH in ...`` would change what runs), heredocs
and here-strings (their bodies may expand variables but not run commands).

Denied (a reason is returned), stricter than Claude Code where noted:

- parse errors: tree-sitter ``ERROR`` or ``MISSING`` nodes (``git status &&``, open quotes);
- more than 10,000 characters, more than 50 simple commands, NUL or control characters
  other than newline and tab;
- command substitution (``$( )``, backticks), process substitution (``<( )``, ``>( )``), and
  arithmetic (``$(( ))``, ``(( ))``, ``[[ ]]``) because arithmetic evaluation of a variable's
  value can run ``a[$(cmd)]``; ``${x@P}``-style and subscripted expansions for the same reason;
- assignments anywhere (``FOO=1 cmd``, ``x=1``, ``export``/``declare``/``local``), function
  definitions (they can shadow an allowed name), ``case``, C-style ``for``, ``coproc``;
- a command name that is not a literal word (``$CMD``, ``"git"``, ``g\\it``); absolute paths and
  wrappers (``/usr/bin/git``, ``sh -c``, ``env``, ``xargs``) are simply other commands, so they
  are denied unless a rule names them;
- redirection targets that are not literal (``$x``, quotes with expansions), start with ``~``
  or contain a glob character; ``/dev/null`` needs no rule; fd duplications (``2>&1``) are fine;
  ``<>`` counts as a write; input redirections (``< file``) are not checked, as in Claude Code;
- any node type not listed above.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import tree_sitter_bash as tsb
from tree_sitter import Language, Node, Parser

__all__ = ["MAX_COMMANDS", "MAX_LENGTH", "BashSplit", "pattern_matches", "split_command"]

MAX_LENGTH = 10_000
MAX_COMMANDS = 50

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Containers whose named children are statements or the pieces checked below.
_CONTAINERS = frozenset({"program", "list", "pipeline", "compound_statement", "subshell",
                         "negated_command", "if_statement",
                         "elif_clause", "else_clause", "while_statement", "do_group",
                         "for_statement"})  # fmt: skip
# Word-like nodes allowed as arguments (after recursion into their children).
_WORD_NODES = frozenset({"word", "string", "string_content", "raw_string", "number",
                         "concatenation", "simple_expansion", "variable_name",
                         "special_variable_name", "ansi_c_string", "translated_string",
                         "expansion", "heredoc_content", "heredoc_body", "heredoc_start",
                         "heredoc_end", "file_descriptor"})  # fmt: skip
_DENIED = {
    "command_substitution": "command substitution",
    "process_substitution": "process substitution",
    "arithmetic_expansion": "arithmetic expansion",
    "compound_assignment_statement": "arithmetic",
    "test_command": "[[ ]] test (arithmetic evaluation)",
    "variable_assignment": "variable assignment",
    "declaration_command": "declaration (export/declare/local)",
    "unset_command": "unset",
    "function_definition": "function definition",
    "case_statement": "case statement",
    "c_style_for_statement": "C-style for loop",
    "ERROR": "unparseable command",
}
_WRITE_OPS = frozenset({">", ">>", "&>", "&>>", ">|", "<>", ">&", "&>|"})
_DUP_OPS = frozenset({">&", "<&", ">&-", "<&-"})
_GLOB_CHARS = frozenset("*?[]{}")
_LOOP_VAR = re.compile(r"[a-z_][a-z0-9_]*\Z")


@dataclass(frozen=True, slots=True)
class BashSplit:
    """Simple commands and write targets of a command line, or ``error`` (deny)."""

    commands: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    error: str | None = None


class _Deny(Exception):
    """Internal: stop the walk with a reason to deny."""


@functools.cache
def _parser() -> Parser:
    return Parser(Language(tsb.language()))


def split_command(command: object) -> BashSplit:
    """Split a command line into simple commands and write targets; never raises."""
    if not isinstance(command, str) or not command.strip():
        return BashSplit(error="missing or empty command")
    if len(command) > MAX_LENGTH:
        return BashSplit(error=f"command longer than {MAX_LENGTH} characters")
    if _CONTROL.search(command):
        return BashSplit(error="control character in command")
    try:
        tree = _parser().parse(command.encode("utf-8"))
        if tree.root_node.has_error:
            return BashSplit(error="unparseable command")
        walker = _Walker()
        walker.statement(tree.root_node)
    except _Deny as deny:
        return BashSplit(error=str(deny))
    except (RecursionError, UnicodeError, ValueError) as exc:  # fail closed
        return BashSplit(error=f"cannot analyse command: {type(exc).__name__}")
    if not walker.commands:
        return BashSplit(error="no command")
    return BashSplit(tuple(walker.commands), tuple(walker.writes))


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", "surrogateescape")


class _Walker:
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.writes: list[str] = []

    def statement(self, node: Node) -> None:
        if node.is_missing:
            raise _Deny("unparseable command")
        kind = node.type
        if kind in _DENIED:
            raise _Deny(_DENIED[kind])
        if kind == "command":
            self.command(node)
        elif kind == "redirected_statement":
            self.redirected(node)
        elif kind in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
            if self.redirect(node):
                raise _Deny("redirection without a command")
        elif kind in _CONTAINERS:
            if kind == "for_statement":
                self.for_header(node)
            for child in node.named_children:
                self.statement(child)
        elif kind in ("comment",):
            return
        elif kind in _WORD_NODES:
            self.word(node)  # `if`/`for` headers and loop value lists
        else:
            raise _Deny(f"unsupported shell syntax: {kind}")

    def for_header(self, node: Node) -> None:
        variable = node.child_by_field_name("variable")
        if variable is None or not _LOOP_VAR.match(_text(variable)):
            raise _Deny("for loop variable must be lower-case")
        if node.child_by_field_name("value") is None:
            raise _Deny("for loop without an explicit word list")

    def redirected(self, node: Node) -> None:
        body = node.child_by_field_name("body")
        extra: list[str] = []
        for child in node.named_children:
            if child != body:
                extra += self.redirect(child)
        if body is None:
            raise _Deny("redirection without a command")
        if body.type == "command":
            self.command(body, extra)
        elif extra:
            raise _Deny("arguments after a redirection of a compound command")
        else:
            self.statement(body)

    def command(self, node: Node, extra: list[str] | None = None) -> None:
        words: list[str] = []
        for child in node.named_children:
            kind = child.type
            if kind == "command_name":
                self.command_name(child)
                words.append(_text(child))
            elif kind in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
                words += self.redirect(child)
            elif kind in _DENIED:
                raise _Deny(_DENIED[kind])
            else:
                self.word(child)
                words.append(_text(child))
        words += extra or ()
        if not words or node.child_by_field_name("name") is None:
            raise _Deny("command without a name")
        self.commands.append(" ".join(_squash(w) for w in words))
        if len(self.commands) > MAX_COMMANDS:
            raise _Deny(f"more than {MAX_COMMANDS} simple commands")

    def command_name(self, node: Node) -> None:
        children = node.named_children
        if len(children) != 1 or children[0].type != "word":
            raise _Deny("command name is not a literal word")
        name = _text(children[0])
        if not name or any(ch in name for ch in "\\$'\"`") or node.is_missing:
            raise _Deny("command name is not a literal word")

    def word(self, node: Node) -> None:
        if node.is_missing:
            raise _Deny("unparseable command")
        kind = node.type
        if kind in _DENIED:
            raise _Deny(_DENIED[kind])
        if kind not in _WORD_NODES:
            raise _Deny(f"unsupported shell syntax: {kind}")
        if kind == "expansion" and any(ch in _text(node) for ch in "@[!="):
            raise _Deny("indirect, assigning, transforming or subscripted expansion")
        for child in node.named_children:
            self.word(child)

    def redirect(self, node: Node) -> list[str]:
        """Check one redirection; return the command words tree-sitter attached to it."""
        if node.type == "file_redirect":
            return self.file_redirect(node)
        extra: list[str] = []
        for child in node.named_children:  # heredoc / here-string: bodies and nested redirects
            if child.type in ("file_redirect", "heredoc_redirect", "herestring_redirect"):
                extra += self.redirect(child)
            elif child.type in ("pipeline", "list", "command"):
                raise _Deny("command after a heredoc start")
            else:
                self.word(child)
        return extra

    def file_redirect(self, node: Node) -> list[str]:
        operator = next((_text(c) for c in node.children if not c.is_named), "")
        destinations = node.children_by_field_name("destination")
        for child in node.named_children:
            self.word(child)
        if not destinations:
            if operator in ("<&-", ">&-"):
                return []  # closing a descriptor
            raise _Deny("unsupported redirection")
        target, extra = destinations[0], [_text(d) for d in destinations[1:]]
        if operator in _DUP_OPS and target.type == "number":
            return extra  # fd duplication such as 2>&1
        if operator in _WRITE_OPS:
            path = _literal_target(target)
            if path != "/dev/null":
                self.writes.append(path)
        return extra


def _literal_target(node: Node) -> str:
    text = _text(node)
    plain = all(c.type == "string_content" for c in node.named_children)
    if node.type == "raw_string" or (node.type == "string" and plain):
        text = text[1:-1]
    elif node.type != "word":
        raise _Deny("redirection target is not a literal path")
    if not text or text.startswith("~") or any(ch in _GLOB_CHARS for ch in text):
        raise _Deny("redirection target starts with ~ or contains a glob character")
    if any(ch in text for ch in "\\$`\"'"):
        raise _Deny("redirection target is not a literal path")
    return text


def _squash(word: str) -> str:
    # Line continuations inside a word's source are not part of the word.
    return word.replace("\\\n", "") if "\\\n" in word else word


@functools.lru_cache(maxsize=4096)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    pattern = re.sub(" {2,}", " ", pattern)
    tail = ""
    if pattern.endswith(" *"):  # word boundary: prefix then a space, or the end
        pattern, tail = pattern[:-2], "(?: .*)?"
    body = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.compile(body + tail + r"\Z", re.DOTALL)


def pattern_matches(command: str, pattern: str) -> bool:
    """Claude Code's Bash pattern match on one simple command (``*`` spans spaces)."""
    if "*" not in pattern:
        return command == re.sub(" {2,}", " ", pattern)
    return _pattern_regex(pattern).match(command) is not None
