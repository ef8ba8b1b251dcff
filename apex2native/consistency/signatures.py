"""Calls to a function that gained a parameter pass it, in every file."""

from __future__ import annotations

from apex2native.consistency.repo import RepoView, Violation
from apex2native.facts import FileFacts

CODE = "A2N100"


def check_signatures(view: RepoView) -> list[Violation]:
    added: dict[str, tuple[list[str], list[str], str, str]] = {}
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
            params = [p for p in func.params if p not in ("self", "cls")]
            added[qualname] = (new_required, params, unit_of(facts, qualname), path)
    if not added:
        return []
    found: list[Violation] = []
    for path, old in view.plan.summaries.items():
        new = view.new_summary(path) or old
        for call in new.calls:
            callee = view.graph.canonical(call.callee, path)
            callee = view.plan.reexports.get(callee, callee)
            if callee not in added:
                continue
            required, params, unit, home = added[callee]
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
                found += [
                    Violation(u, CODE, message, path, line, culprit=home)
                    for u in _with_readers(unit, view, path)
                ]
        for name, line, caller in new.value_refs:
            read = view.graph.canonical(name, path)
            for callee in _read(view.plan.reexports.get(read, read), added):
                required, _, unit, home = added[callee]
                message = (
                    f"{callee} is passed as a value in {caller or 'the module'}, and its other "
                    f"callers do not pass `{', '.join(required)}`, which the rewrite adds"
                )
                where = line
                if path in view.changed:
                    where = _old_ref_line(view, path, name, caller)
                found += [
                    Violation(u, CODE, message, path, where, culprit=home)
                    for u in _with_readers(unit, view, path)
                ]
    return found


def _with_readers(unit: str, view: RepoView, path: str) -> list[str]:
    """The callee's unit, and the units of the file that calls it the old way: held back,
    the callee keeps apex's `scale_loss`, which needs that file's `amp.initialize` too."""
    facts = view.plan.facts.get(path)
    return sorted({unit} | (facts.units() if facts is not None else set()))


def _old_ref_line(view: RepoView, path: str, name: str, caller: str) -> int:
    """Where a value read stood in the original text: its reader's def, or for a read at
    module level (a decorator, a class-body alias) the read itself."""
    old = view.old_summary(path)
    if old is not None and caller not in old.functions:
        for old_name, line, old_caller in old.value_refs:
            if (old_name, old_caller) == (name, caller):
                return line
    return view.old_line(path, caller)


def _read(name: str, added: dict) -> list[str]:
    """The changed functions a value read names: itself, or for `mod.*` (a dynamic lookup
    in `mod`: `getattr(mod, name)`, `vars(mod)`) every one inside `mod`."""
    if name.startswith("*."):  # a module chosen at run time: any function of that name
        return sorted(c for c in added if name in ("*.*", f"*.{c.rsplit('.', 1)[-1]}"))
    if name.endswith(".*"):
        return sorted(c for c in added if c.startswith(name[:-1]))
    return [name] if name in added else []


def unit_of(facts: FileFacts | None, qualname: str) -> str:
    """The migration unit that gives a function its new parameter ("" when none does)."""
    if facts is None:
        return ""
    if qualname in facts.params:
        return facts.params[qualname][1].unit
    if qualname in facts.flags:
        return facts.flags[qualname][1]
    if qualname in facts.amp_params:
        return facts.amp_params[qualname][2].unit
    return ""
