"""A scaler switched by another module's apex-availability flag is held back.

`from utils import HAS_APEX`, then `if HAS_APEX: amp.initialize(...)`: while apex was
installed the flag was True and the program trained in mixed precision. Once apex is gone the
guard that sets it says False, so `GradScaler(enabled=bool(HAS_APEX))` would train in fp32
without a word. Folding the flag to True is not safe either: another reader of the same flag
may guard apex-only arguments with it.
"""

from __future__ import annotations

import re

from apex2native.consistency.repo import RepoView, Violation
from apex2native.scopes import absolute_name

CODE = "A2N102"


def check_imported_flags(view: RepoView) -> list[Violation]:
    found: list[Violation] = []
    for path in sorted(view.changed):
        facts = view.plan.facts.get(path)
        summary = view.old_summary(path)
        if facts is None or summary is None or not facts.inits:
            continue
        flags = _imported_flags(view, path, summary)
        if not flags:
            continue
        for decision in facts.inits.values():
            spec = decision.spec
            if spec is None or spec.unit in view.blocked:
                continue
            switch = " ".join((*spec.conditions, decision.autocast_enabled or ""))
            read = sorted(flag for flag in flags if _reads(switch, flag))
            if read:
                source = view.plan.relative(flags[read[0]])
                message = (
                    f"the scaler's switch reads `{read[0]}`, the apex-availability flag of "
                    f"{source}: True while apex was installed, False once it is gone; say "
                    "by hand what turns mixed precision on"
                )
                found.append(Violation(spec.unit, CODE, message, path, decision.line))
    return found


def _reads(switch: str, flag: str) -> bool:
    """`switch` reads `flag` (`HAS_APEX`, or `utils.HAS_APEX`), not a longer name."""
    return re.search(rf"(?<![\w.]){re.escape(flag)}(?!\w)", switch) is not None


def _imported_flags(view: RepoView, path: str, summary) -> dict[str, str]:
    """How this file spells another project module's guard flags -> that module's file:
    `HAS_APEX` imported from it, or `utils.HAS_APEX` read of the module itself."""
    graph = view.plan.graph
    out: dict[str, str] = {}
    if graph is None:
        return out
    for ref in summary.imports:
        found, rest = graph.source_of(ref, summary)
        if found is not None and rest:
            continue
        if not ref.names:  # `import pkg.utils [as u]`, then `u.HAS_APEX`
            out.update({f"{ref.spelled()}.{f}": found for f in _flags_of(view, path, found)})
            continue
        flags = _flags_of(view, path, found)
        out.update({bound: found for name, bound in ref.names if name in flags})
        base = absolute_name(ref.module, summary.module, summary.is_package)
        for name, bound in ref.names:  # `from pkg import utils`, then `utils.HAS_APEX`
            module, tail = graph.module_file(f"{base}.{name}", summary.path)
            if module not in (None, found) and not tail:
                out.update({f"{bound}.{f}": module for f in _flags_of(view, path, module)})
    return out


def _flags_of(view: RepoView, path: str, found: str | None) -> set[str]:
    """The guard flags of another project file (none for this one, or for no file)."""
    source = view.plan.summaries.get(found) if found and found != path else None
    return source.guard_flags if source is not None else set()
