"""Every `from <project module> import name` still finds the name after the rewrite."""

from __future__ import annotations

from apex2native.consistency.repo import RepoView, Violation
from apex2native.scopes import absolute_name

CODE = "A2N100"


def check_imports(view: RepoView) -> list[Violation]:
    found: list[Violation] = []
    changed = view.changed
    for path, old in view.plan.summaries.items():
        new = view.new_summary(path) or old
        for ref in new.imports:
            if not ref.names or ref.star:
                continue
            base = absolute_name(ref.module, new.module, new.is_package)
            target, rest = view.graph.module_file(base, path)
            if target is None or rest or target not in changed:
                continue
            before, after = view.old_summary(target), view.new_summary(target)
            if before is None or after is None:
                continue
            for name, _ in ref.names:
                if view.graph.module_file(f"{base}.{name}", path)[1] == "":
                    continue  # a submodule, not a name
                if name in after.module_names or name not in before.module_names:
                    continue
                line = _old_import_line(view, path, ref.module, name)
                message = (
                    f"`from {ref.module} import {name}` would fail: the rewrite removes "
                    f"`{name}` from {view.display(target)}"
                )
                for unit in sorted(view.units_in(target)) or [""]:
                    found.append(Violation(unit, CODE, message, path, line, target))
    return found


def _old_import_line(view: RepoView, path: str, module: str, name: str) -> int:
    old = view.old_summary(path)
    for ref in old.imports if old else []:
        if ref.module == module and any(n == name for n, _ in ref.names):
            return ref.line
    return 1
