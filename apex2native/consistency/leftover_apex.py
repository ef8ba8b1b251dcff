"""No apex.amp use is left in a program whose amp.initialize the rewrite removed.

apex's amp state is process-wide: `amp.scale_loss`, `amp.master_params` or a registration
left behind would run without an initialize, or next to a GradScaler, in the same program.
"""

from __future__ import annotations

from apex2native.consistency.repo import RepoView, Violation

CODE = "A2N100"


def check_leftover_apex(view: RepoView) -> list[Violation]:
    migrated: dict[str, str] = {}  # unit -> a file it changed
    for path in view.changed:
        for unit in view.units_in(path):
            if unit not in view.blocked:
                migrated.setdefault(unit, path)
    if not migrated:
        return []
    found: list[Violation] = []
    for path in sorted(set(view.plan.summaries) | view.changed):
        summary = view.new_summary(path)
        if summary is None or not summary.amp_uses:
            continue
        line, name = summary.amp_uses[0]
        if path in view.changed:
            line = _old_line(view, path, name)
        for unit, where in sorted(migrated.items()):
            if view.same_program(path, where):
                message = (
                    f"`{name}` stays apex here, so the amp.initialize it shares a program with "
                    f"(in {view.plan.relative(unit.rpartition(':')[0])}) stays apex too: apex "
                    "and a GradScaler must not both run"
                )
                found.append(Violation(unit, CODE, message, path, line))
    return found


def _old_line(view: RepoView, path: str, name: str) -> int:
    old = view.old_summary(path)
    for line, old_name in old.amp_uses if old else []:
        if old_name == name:
            return line
    return 1
