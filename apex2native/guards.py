"""Checks every rewritten file must pass before it is written; a failure keeps the original."""

from __future__ import annotations

import builtins
from collections.abc import Callable

import libcst as cst
from libcst.metadata import MetadataWrapper, ScopeProvider

BUILTINS = set(dir(builtins)) | {
    "__file__",
    "__name__",
    "__doc__",
    "__builtins__",
    "__spec__",
    "__path__",
}


def unbound_in(wrapper: MetadataWrapper) -> set[str]:
    """Names the wrapped module reads that nothing binds (and that are not builtins)."""
    missing: set[str] = set()
    for scope in set(wrapper.resolve(ScopeProvider).values()):
        if scope is None:
            continue
        for access in scope.accesses:
            name = access.node.value if isinstance(access.node, cst.Name) else None
            if name and not access.referents and name not in BUILTINS:
                missing.add(name)
    return missing


def unbound_names(text: str) -> set[str]:
    return unbound_in(MetadataWrapper(cst.parse_module(text)))


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
