"""Checks every rewritten file must pass before it is written; a failure keeps the original."""

from __future__ import annotations

import builtins
import symtable
from collections.abc import Callable

import libcst as cst

BUILTINS = set(dir(builtins)) | {
    "__file__",
    "__name__",
    "__doc__",
    "__builtins__",
    "__spec__",
    "__path__",
}


def unbound_names(text: str) -> set[str]:
    """Names the code reads that nothing binds (and that are not builtins).

    Python's own symbol tables answer this: reads that resolve to the module scope and
    that no module-level statement (or `global` declaration) binds.
    """
    try:
        top = symtable.symtable(text, "<rewritten>", "exec")
    except (SyntaxError, ValueError):
        return set()
    bound: set[str] = set()
    reads: set[str] = set()
    stack = [top]
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        module = table.get_type() == "module"
        for sym in table.get_symbols():
            name = sym.get_name()
            binds = sym.is_assigned() or sym.is_imported() or sym.is_namespace()
            if module:
                (bound if binds or sym.is_parameter() else reads).add(name)
            elif sym.is_declared_global() and binds:
                bound.add(name)
            elif sym.is_global() and sym.is_referenced():
                reads.add(name)
    return reads - bound - BUILTINS


def check(
    new: str, old_unbound: set[str], rerun: Callable[[str], tuple[str, set[str]]]
) -> str | None:
    """None when `new` is safe to write, else the reason it is not.

    It must compile, bind every name it reads that the original bound (`old_unbound` are
    the original's unbound names), and be a fixed point of the rewrite: `rerun` rewrites
    `new` again and returns that text with the unbound names of `new`.
    """
    try:
        compile(new, "<rewritten>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"the result does not compile (line {exc.lineno}: {exc.msg})"
    try:
        again, new_unbound = rerun(new)
    except cst.ParserSyntaxError as exc:
        return f"the result does not parse ({exc.message})"
    missing = new_unbound - old_unbound
    if missing:
        return "the result reads unbound names: " + ", ".join(sorted(missing))
    if again != new:
        return "a second run would change the result again (not idempotent)"
    return None
