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

CODE = "A2N102"
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


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
            read = sorted(set(IDENTIFIER.findall(switch)) & set(flags))
            if read:
                source = view.plan.relative(flags[read[0]])
                message = (
                    f"the scaler's switch reads `{read[0]}`, the apex-availability flag of "
                    f"{source}: True while apex was installed, False once it is gone; say "
                    "by hand what turns mixed precision on"
                )
                found.append(Violation(spec.unit, CODE, message, path, decision.line))
    return found


def _imported_flags(view: RepoView, path: str, summary) -> dict[str, str]:
    """Names this file binds by importing another project module's guard flag -> that file."""
    graph = view.plan.graph
    out: dict[str, str] = {}
    if graph is None:
        return out
    for ref in summary.imports:
        found, rest = graph.source_of(ref, summary)
        source = view.plan.summaries.get(found) if found and not rest else None
        if source is None or found == path:
            continue
        for name, bound in ref.names:
            if name in source.guard_flags:
                out[bound] = found
    return out
