"""A rewritten module's code, reusing the original text of the statements it kept.

LibCST prints a module by generating every node again, which costs more than parsing it.
A rewrite changes a few top-level statements; the others are the very objects the parser
made, and their code is already in the original text. Each top-level statement owns a run
of whole lines (its leading blank and comment lines, then its own code), so those runs are
cut from the text and only new statements are generated.
"""

from __future__ import annotations

import re

import libcst as cst
from libcst._nodes.internal import CodegenState

from apex2native.index import TreeIndex

# a line of only a backslash (and blanks) joins the next one: one LibCST blank line, two
# lines of text
JOINED = re.compile(r"^[ \t\f]*\\\n", re.MULTILINE)


def module_code(index: TreeIndex, text: str, new: cst.Module) -> str:
    """`new.code`, for a module made from `index.module` (parsed from `text`)."""
    old = index.module
    runs = _statement_runs(index, text)
    if runs is None or not _same_layout(old, new):
        return new.code
    kept = {id(stmt): (stmt, run) for stmt, run in zip(old.body, runs)}
    state = CodegenState(default_indent=new.default_indent, default_newline=new.default_newline)
    for line in new.header:
        line._codegen(state)
    for stmt in new.body:
        original, run = kept.get(id(stmt), (None, ""))
        if original is stmt:  # the very node the parser made: its text is the run
            state.add_token(run)
        else:
            stmt._codegen(state)
    for line in new.footer:
        line._codegen(state)
    return "".join(state.tokens)


def _same_layout(old: cst.Module, new: cst.Module) -> bool:
    """The runs can be reused: same newline and indent, and both end with a newline (a
    module without one drops its last newline token, which a reused run would hide)."""
    return (
        old.default_newline == new.default_newline
        and old.default_indent == new.default_indent
        and old.has_trailing_newline
        and new.has_trailing_newline
        and bool(new.body or new.header or new.footer)
    )


def _statement_runs(index: TreeIndex, text: str) -> list[str] | None:
    """The text of each top-level statement of `index.module`, or None when the lines
    cannot be told apart with certainty (then the caller prints the module)."""
    module = index.module
    if "\r" in text or not module.body or not text.endswith("\n") or JOINED.search(text):
        return None
    firsts = index.top_level_lines()
    if firsts is None:
        return None
    lines = text.split("\n")  # the last item is the empty rest after the final newline
    offsets = [0]
    for line in lines[:-1]:
        offsets.append(offsets[-1] + len(line) + 1)
    total = len(lines) - 1
    starts = []
    for stmt, first in zip(module.body, firsts):
        start = first - _lines_before(module, stmt)
        if not _looks_right(stmt, lines, start, first):
            return None
        starts.append(start)
    end = total + 1 - len(module.footer)
    if starts[0] != len(module.header) + 1 or any(
        a >= b for a, b in zip(starts, [*starts[1:], end])
    ):
        return None
    bounds = [*starts, end]
    runs = [text[offsets[a - 1] : offsets[b - 1]] for a, b in zip(bounds, bounds[1:])]
    if text[: offsets[starts[0] - 1]] != _code(module, module.header):
        return None
    last = lines[-2].strip()
    if not last or last.startswith("#"):
        # LibCST may not print blank or comment lines at the end back as they are
        tail = runs[-1] + text[offsets[end - 1] :]
        if tail != _code(module, [module.body[-1], *module.footer]):
            return None
    return runs


def _code(module: cst.Module, nodes) -> str:
    return "".join(module.code_for_node(node) for node in nodes)


def _lines_before(module: cst.Module, stmt: cst.BaseStatement) -> int:
    """How many lines a statement owns above the line `ast` gives for it: its leading lines,
    and a def's or class's decorators with the lines between them."""
    count = len(stmt.leading_lines)
    decorators = getattr(stmt, "decorators", ())
    for decorator in decorators:
        count += module.code_for_node(decorator).count("\n")
    if decorators:
        count += len(stmt.lines_after_decorators)  # type: ignore[attr-defined]
    return count


def _looks_right(stmt: cst.BaseStatement, lines: list[str], start: int, first: int) -> bool:
    """The run starts where it should: its comment lines are where LibCST put them, and its
    first line of code starts at the margin."""
    if start < 1 or first > len(lines) - 1:
        return False
    for offset, empty in enumerate(stmt.leading_lines):
        line = lines[start - 1 + offset]
        if empty.comment is not None and not line.rstrip().endswith(empty.comment.value):
            return False
        if empty.comment is None and line.strip():
            return False
    if getattr(stmt, "decorators", ()):
        if not lines[start - 1 + len(stmt.leading_lines)].startswith("@"):
            return False
    head = lines[first - 1]
    return bool(head) and not head[0].isspace()
