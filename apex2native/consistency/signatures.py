"""Calls to a function that gained a parameter pass it, in every file."""

from __future__ import annotations

from apex2native.consistency.repo import RepoView, Violation

CODE = "A2N100"


def check_signatures(view: RepoView) -> list[Violation]:
    added: dict[str, tuple[list[str], list[str], str]] = {}
    for path in view.changed:
        before, after = view.old_summary(path), view.new_summary(path)
        if before is None or after is None:
            continue
        facts = view.plan.facts.get(path)
        for qualname, func in after.functions.items():
            old = before.functions.get(qualname)
            if old is None:
                continue
            new_required = [p for p in func.required if p not in old.required]
            if not new_required:
                continue
            unit = ""
            if facts is not None and qualname in facts.params:
                unit = facts.params[qualname][1].unit
            params = [p for p in func.params if p not in ("self", "cls")]
            added[qualname] = (new_required, params, unit)
    if not added:
        return []
    found: list[Violation] = []
    for path, old in view.plan.summaries.items():
        new = view.new_summary(path) or old
        for call in new.calls:
            callee = view.graph.canonical(call.callee, path)
            if callee not in added:
                continue
            required, params, unit = added[callee]
            missing = [
                p
                for p in required
                if p not in call.keywords and not (p in params and params.index(p) < len(call.args))
            ]
            if missing:
                line = view.old_line(path, call.caller) if path in view.changed else call.line
                message = (
                    f"a call to {callee} from {call.caller} does not pass "
                    f"`{', '.join(missing)}`, which the rewrite adds"
                )
                found.append(Violation(unit, CODE, message, path, line))
    return found
