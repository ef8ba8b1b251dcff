"""A GradScaler made for an `amp.initialize` that nothing uses goes again.

The scaler of an initialize stands in for apex's loss scaler, but some units have no scaled
backward of their own: the model and optimizer go to a library step that brings its own
scaler (A2N119), or the program only evaluates. A local `scaler = torch.amp.GradScaler()`
that no line reads would be noise in the user's diff; it is taken out after the rules ran,
when every reader the rewrite wrote is in the tree. Only names local to a def: nothing
outside the def can read them.
"""

from __future__ import annotations

import dataclasses

import libcst as cst
import libcst.matchers as m

from apex2native.findings import Finding
from apex2native.rules.initialize import created_note

GRAD_SCALER = m.Call(func=m.Attribute(attr=m.Name("GradScaler")))
# calls an `enabled=` may make that change nothing: the creation can go with them
PURE = m.OneOf(*(m.Name(n) for n in ("bool", "int", "str", "getattr", "hasattr", "isinstance")))


def drop_unused_scalers(
    module: cst.Module, created: list[tuple[str, str, int]]
) -> tuple[cst.Module, set[tuple[str, str, int]]]:
    """`module` without the creations in `created` ((dotted path of the def in its module,
    name, line of the initialize)) that no code reads, and the ones dropped."""
    if not created:
        return module, set()
    finder = _Unread(set(created))
    module.visit(finder)
    if not finder.unread:
        return module, set()
    return module.visit(_Drop(finder.unread)), {key for key, _ in finder.unread}


def renote_dropped(findings: list[Finding], dropped: set[tuple[str, str, int]]) -> list[Finding]:
    """The note of an initialize whose scaler went says so."""
    notes = {(created_note(name), line) for _, name, line in dropped}
    return [
        (
            dataclasses.replace(
                f,
                message="amp.initialize removed: nothing here scales with it (the model and "
                "optimizer go on as they are)",
            )
            if f.code == "A2N102" and (f.message, f.line) in notes
            else f
        )
        for f in findings
    ]


class _Scoped(cst.CSTVisitor):
    def __init__(self) -> None:
        self.stack: list[str] = []

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.stack.append(node.name.value)

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self.stack.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.stack.append(node.name.value)

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.stack.pop()


class _Unread(_Scoped):
    """Creations of `created` in their def whose name that def never reads (nor `locals()`)."""

    def __init__(self, created: set[tuple[str, str, int]]) -> None:
        super().__init__()
        self.created = created
        self.unread: list[tuple[tuple[str, str, int], cst.SimpleStatementLine]] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        super().visit_FunctionDef(node)
        path = ".".join(self.stack)
        for key in self.created:
            if key[0] == path:
                self._check(node, key)

    def _check(self, func: cst.FunctionDef, key: tuple[str, str, int]) -> None:
        name = key[1]
        made = m.Assign(targets=[m.AssignTarget(target=m.Name(name))], value=GRAD_SCALER)
        makers = m.findall(func.body, m.SimpleStatementLine(body=[made]))
        if len(makers) != 1:
            return
        reads = m.findall(func.body, m.Name(name))
        dynamic = m.findall(func.body, m.Call(func=m.Name("locals") | m.Name("vars")))
        made = makers[0].body[0].value  # type: ignore[attr-defined]
        calls = [c for arg in made.args for c in m.findall(arg, m.Call())]
        effects = [c for c in calls if not m.matches(c.func, PURE)]  # `cfg.pop("opt_level")`
        if len(reads) == 1 and not dynamic and not effects:  # the assignment's own target
            self.unread.append((key, makers[0]))  # type: ignore[arg-type]


class _Drop(cst.CSTTransformer):
    def __init__(self, unread: list[tuple[tuple[str, str, int], cst.SimpleStatementLine]]) -> None:
        self.targets = {id(stmt) for _, stmt in unread}

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock):
        kept = [s for o, s in zip(original.body, updated.body) if id(o) not in self.targets]
        if len(kept) == len(updated.body):
            return updated
        if not kept:
            return updated.with_changes(body=[cst.SimpleStatementLine([cst.Pass()])])
        dropped = next(o for o in original.body if id(o) in self.targets)
        index = [id(o) for o in original.body].index(id(dropped))
        if index < len(kept) and dropped.leading_lines:
            # the dropped line's comments and spacing stay with the line that follows
            follower = kept[index]
            kept[index] = follower.with_changes(
                leading_lines=[*dropped.leading_lines, *follower.leading_lines]
            )
        return updated.with_changes(body=kept)
