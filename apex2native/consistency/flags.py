"""No attribute that held the amp module, and now holds a flag, is still used as amp."""

from __future__ import annotations

import ast

from apex2native.consistency.repo import RepoView, Violation

CODE = "A2N100"
AMP_API = {
    "initialize",
    "scale_loss",
    "master_params",
    "state_dict",
    "load_state_dict",
    "disable_casts",
    "_amp_state",
    "register_half_function",
    "register_float_function",
    "register_promote_function",
    "half_function",
    "float_function",
    "promote_function",
}


def check_flags(view: RepoView) -> list[Violation]:
    flags: dict[str, tuple[str, str]] = {}
    for path in view.changed:
        for attr, unit in view.outcomes[path].unit_facts.flags.items():
            flags[attr] = (unit, path)
    if not flags:
        return []
    found: list[Violation] = []
    for path in set(view.plan.summaries) | set(view.changed):
        tree = view.new_tree(path)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Attribute)
                and node.attr in AMP_API
                and isinstance(node.value, ast.Attribute)
                and node.value.attr in flags
            ):
                continue
            unit, owner = flags[node.value.attr]
            if not view.same_program(path, owner):
                continue
            message = (
                f"`.{node.value.attr}.{node.attr}` is still used here, but "
                f"`{node.value.attr}` now holds a flag instead of the amp module"
            )
            line = view.old_line(path, "") if path in view.changed else node.lineno
            found.append(Violation(unit, CODE, message, path, line))
    return found
