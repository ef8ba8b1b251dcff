"""Planned edits on the original tree, applied in one transformer pass.

Rules never mutate the tree: they record what should happen to which original node, grouped
by transaction, so a site that cannot be finished can be rolled back whole. The applier then
walks the tree once. Node identity is stable in LibCST for untouched nodes, which is what lets
an edit planned on the original tree find its node again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import libcst as cst

TODO_PREFIX = "# TODO(apex2native):"

Replacement = Callable[[cst.CSTNode], object]


@dataclass
class StatementEdit:
    """What happens around and to one statement (or small statement inside a one-line suite)."""

    before: list[cst.BaseStatement] = field(default_factory=list)
    after: list[cst.BaseStatement] = field(default_factory=list)
    replace: Replacement | None = None  # updated statement -> list of statements
    todos: list[str] = field(default_factory=list)
    wrap_until: cst.CSTNode | None = None  # wrap this statement through `wrap_until` ...
    wrap_with: cst.With | None = None  # ... in this `with` (its body is replaced)
    move_before: list[cst.CSTNode] = field(default_factory=list)  # statements moved here
    gathers: list[tuple[Callable, list[list[cst.CSTNode]]]] = field(default_factory=list)
    removed: bool = False  # moved elsewhere; its comments stay behind


@dataclass
class _Op:
    group: object
    apply: Callable[[EditSet], None]


class EditSet:
    """Edits recorded by rules, in transactions that can be dropped before application."""

    def __init__(self) -> None:
        self._ops: list[_Op] = []
        self._dropped: set[int] = set()
        self._keep: list[object] = []  # dropped groups stay alive so their ids stay unique
        self.statements: dict[cst.CSTNode, StatementEdit] = {}
        self.nodes: dict[cst.CSTNode, Replacement] = {}

    def _record(self, group: object, fn: Callable[[EditSet], None]) -> None:
        self._ops.append(_Op(group, fn))

    def drop(self, group: object) -> None:
        """Forget every edit recorded under `group` (a site that could not be finished)."""
        self._dropped.add(id(group))
        self._keep.append(group)

    def is_dropped(self, group: object) -> bool:
        return id(group) in self._dropped

    def replace_node(self, group: object, node: cst.CSTNode, fn: Replacement) -> None:
        self._record(group, lambda s: s.nodes.__setitem__(node, fn))

    def replace_statement(self, group: object, stmt: cst.CSTNode, fn: Replacement) -> None:
        self._record(group, lambda s: setattr(s._stmt(stmt), "replace", fn))

    def insert_before(self, group: object, stmt: cst.CSTNode, new: cst.BaseStatement) -> None:
        self._record(group, lambda s: s._stmt(stmt).before.append(new))

    def insert_after(self, group: object, stmt: cst.CSTNode, new: cst.BaseStatement) -> None:
        self._record(group, lambda s: s._stmt(stmt).after.append(new))

    def todo(self, group: object, stmt: cst.CSTNode, text: str) -> None:
        def add(s: EditSet) -> None:
            todos = s._stmt(stmt).todos
            if text not in todos:
                todos.append(text)

        self._record(group, add)

    def wrap(self, group: object, first: cst.CSTNode, last: cst.CSTNode, template: cst.With):
        def add(s: EditSet) -> None:
            edit = s._stmt(first)
            edit.wrap_until, edit.wrap_with = last, template

        self._record(group, add)

    def move(self, group: object, stmt: cst.CSTNode, before: cst.CSTNode) -> None:
        """Move `stmt` so that it runs right before `before` (in another block)."""

        def add(s: EditSet) -> None:
            s._stmt(stmt).removed = True
            s._stmt(before).move_before.append(stmt)

        self._record(group, add)

    def gather(
        self,
        group: object,
        arms: list[list[cst.CSTNode]],
        before: cst.CSTNode,
        build: Callable[[list[list[cst.BaseStatement]]], cst.BaseStatement],
    ) -> None:
        """Move the statements of `arms` to just before `before`, into the statement that
        `build` makes of them (each arm's statements as rewritten)."""

        def add(s: EditSet) -> None:
            for arm in arms:
                for stmt in arm:
                    s._stmt(stmt).removed = True
            s._stmt(before).gathers.append((build, arms))

        self._record(group, add)

    def _stmt(self, node: cst.CSTNode) -> StatementEdit:
        return self.statements.setdefault(node, StatementEdit())

    def compile(self) -> EditSet:
        """Run the surviving operations; after this `statements` and `nodes` are final."""
        for op in self._ops:
            if id(op.group) not in self._dropped:
                op.apply(self)
        self._ops = []
        return self

    def __bool__(self) -> bool:
        return bool(self.statements or self.nodes)

    def only_todos(self) -> bool:
        """Whether the compiled edits only add markers: the code itself stays as it is."""
        return not self.nodes and all(
            e.todos and e == StatementEdit(todos=e.todos) for e in self.statements.values()
        )

    def touched(self) -> list[cst.CSTNode]:
        """The original nodes some edit applies to."""
        moved = [n for e in self.statements.values() for n in e.move_before]
        gathered = [
            n for e in self.statements.values() for _, arms in e.gathers for a in arms for n in a
        ]
        return [*self.statements, *self.nodes, *moved, *gathered]


def todo_line(text: str) -> cst.EmptyLine:
    return cst.EmptyLine(comment=cst.Comment(f"{TODO_PREFIX} {text}"))


def _as_lines(node: cst.CSTNode) -> list[cst.BaseStatement]:
    """A small statement taken out of a one-line suite becomes a line of its own."""
    if isinstance(node, cst.BaseSmallStatement):
        return [
            cst.SimpleStatementLine(body=[node.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)])
        ]
    return [node]  # type: ignore[list-item]


def _with_leading(stmt: cst.BaseStatement, lines: Sequence[cst.EmptyLine]) -> cst.BaseStatement:
    if not lines:
        return stmt
    if isinstance(stmt, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
        return stmt.with_changes(leading_lines=[*lines, *stmt.leading_lines])
    return stmt


def _leading(stmt: cst.CSTNode) -> Sequence[cst.EmptyLine]:
    return getattr(stmt, "leading_lines", ())


def _without_header_todos(stmt: cst.BaseStatement, header: Sequence[cst.EmptyLine]):
    """The first statement without the markers the module's header already holds: a
    marker above a module's first line is parsed into the header on the next run, where
    the statement's own leading lines no longer show it."""
    present = {line.comment.value for line in header if line.comment is not None}
    lines = _leading(stmt)
    kept = [line for line in lines if not (_is_todo(line) and line.comment.value in present)]
    if len(kept) == len(lines):
        return stmt
    return stmt.with_changes(leading_lines=kept)


def _is_todo(line: cst.EmptyLine) -> bool:
    return line.comment is not None and line.comment.value.startswith(TODO_PREFIX)


def _strip_leading(stmt: cst.BaseStatement) -> cst.BaseStatement:
    if _leading(stmt):
        return stmt.with_changes(leading_lines=())
    return stmt


class EditApplier(cst.CSTTransformer):
    """Applies a compiled EditSet in one walk of the tree.

    Only the paths from the root to edited nodes are walked (`hot`: their ids); every other
    subtree is kept as it is, which is most of a file.
    """

    def __init__(self, edits: EditSet, hot: set[int] | None = None) -> None:
        super().__init__()
        self.edits = edits
        self.hot = hot
        self._moved: dict[cst.CSTNode, cst.CSTNode] = {}
        self._emptied: set[int] = set()  # blocks whose every statement the edits removed
        self._markers: list[cst.CSTNode] = []  # kept alive: their ids must not be reused

    def on_visit(self, node: cst.CSTNode) -> bool:
        return self.hot is None or id(node) in self.hot

    def on_leave(self, original_node, updated_node):  # type: ignore[override]
        updated = super().on_leave(original_node, updated_node)
        if original_node in self.edits.statements and self.edits.statements[original_node].removed:
            self._moved[original_node] = updated
        fn = self.edits.nodes.get(original_node)
        if fn is not None and isinstance(updated, cst.CSTNode):
            return fn(updated)
        return updated

    def leave_IndentedBlock(self, original_node, updated_node):
        body, carry = self._rebuild(original_node.body, updated_node.body)
        if not body:
            block = updated_node.with_changes(body=[_pass(carry)])
            self._emptied.add(id(block))
            self._markers.append(block)
            return block
        return updated_node.with_changes(body=body, footer=[*carry, *updated_node.footer])

    def leave_Module(self, original_node, updated_node):
        body, carry = self._rebuild(original_node.body, updated_node.body)
        if body:
            body[0] = _without_header_todos(body[0], updated_node.header)
        return updated_node.with_changes(body=body, footer=[*carry, *updated_node.footer])

    def leave_SimpleStatementSuite(self, original_node, updated_node):
        if not any(s in self.edits.statements for s in original_node.body):
            return updated_node
        body, carry = self._rebuild(original_node.body, updated_node.body)
        return cst.IndentedBlock(
            body=body or [_pass(carry)],
            header=updated_node.trailing_whitespace,
        )

    def _expand(self, original: cst.CSTNode, updated: cst.CSTNode) -> list:
        edit = self.edits.statements.get(original)
        if edit is None:
            if self._vacated(updated):
                comments = _comment_lines(_leading(updated))
                return [_Carry(comments)] if comments else []
            return _as_lines(updated)
        pre: list[cst.BaseStatement] = [] if edit.removed else list(edit.before)
        for moved in edit.move_before:
            pre.extend(self._moved_lines(moved))
        for build, arms in edit.gathers:
            pre.append(build([[s for m in arm for s in self._moved_lines(m)] for arm in arms]))
        if edit.removed:
            main: list[cst.BaseStatement] = []
        elif edit.replace is not None:
            replaced = edit.replace(updated)  # type: ignore[arg-type]
            main = [line for stmt in replaced for line in _as_lines(stmt)]
        else:
            main = _as_lines(updated)
        lead = list(_leading(updated))
        present = {line.comment.value for line in lead if line.comment is not None}
        todos = [todo_line(t) for t in edit.todos if todo_line(t).comment.value not in present]
        if main:
            own = list(_leading(main[0]))
            if len(own) >= len(lead) and all(
                a.deep_equals(b) for a, b in zip(own, lead)
            ):  # the statement's own lines are the ones `lead` puts back
                own = own[len(lead) :]
            main[0] = _with_leading(_strip_leading(main[0]), [*todos, *own])
        else:
            lead += todos
        seq = pre + main + ([] if edit.removed else list(edit.after))
        footer = _footer_comments(updated) if not main else []
        if not seq:
            comments = _comment_lines(lead) + footer
            return [_Carry(comments)] if comments else []
        seq[0] = _with_leading(seq[0], lead)
        return seq + ([_Carry(footer)] if footer else [])

    def _vacated(self, stmt: cst.CSTNode) -> bool:
        """An `if` with no other arm whose whole body the edits removed, and whose test
        only reads names: it now does nothing, so it goes instead of keeping `pass`."""
        return (
            isinstance(stmt, cst.If)
            and stmt.orelse is None
            and id(stmt.body) in self._emptied
            and not any(_has_effects(n) for n in _walk(stmt.test))
        )

    def _moved_lines(self, moved: cst.CSTNode) -> list[cst.BaseStatement]:
        """A moved statement as the rest of the rewrite left it."""
        node = self._moved.get(moved, moved)
        moved_edit = self.edits.statements[moved]
        lines = moved_edit.replace(node) if moved_edit.replace else _as_lines(node)
        return [*moved_edit.before, *lines, *moved_edit.after]

    def _rebuild(self, originals: Sequence[cst.CSTNode], updated: Sequence[cst.CSTNode]):
        """New statements of a block, and comment lines left over at its end."""
        out: list[cst.BaseStatement] = []
        carry: list[cst.EmptyLine] = []
        index = {id(node): i for i, node in enumerate(originals)}
        i = 0
        while i < len(originals):
            edit = self.edits.statements.get(originals[i])
            if edit is not None and edit.wrap_until is not None and id(edit.wrap_until) in index:
                j = index[id(edit.wrap_until)]
                inner: list[cst.BaseStatement] = []
                for k in range(i, j + 1):
                    expanded = self._expand(originals[k], updated[k])
                    inner.extend(s for s in expanded if not isinstance(s, _Carry))
                lead = list(_leading(inner[0]))
                inner[0] = _strip_leading(inner[0])
                wrapped = edit.wrap_with.with_changes(body=cst.IndentedBlock(body=inner))
                out.append(_with_leading(wrapped, carry + lead))
                carry = []
                i = j + 1
                continue
            for stmt in self._expand(originals[i], updated[i]):
                if isinstance(stmt, _Carry):
                    carry.extend(stmt.lines)
                    continue
                out.append(_with_leading(stmt, carry))
                carry = []
            i += 1
        return out, carry


def _walk(node: cst.CSTNode):
    yield node
    for child in node.children:
        yield from _walk(child)


def _has_effects(node: cst.CSTNode) -> bool:
    """A call, await, walrus or lambda may do something; reading names and comparing does not."""
    return isinstance(node, (cst.Call, cst.Await, cst.NamedExpr, cst.Yield, cst.Subscript))


def _footer_comments(node: cst.CSTNode) -> list[cst.EmptyLine]:
    """Comment lines LibCST hung at the end of a removed statement's blocks: they stood
    after it in the source (often at the outer level), so they outlive it."""
    out: list[cst.EmptyLine] = []
    for child in _walk(node):
        if isinstance(child, cst.IndentedBlock) and any(
            line.comment is not None for line in child.footer
        ):
            out += list(child.footer)
    return out


def _comment_lines(lines: Sequence[cst.EmptyLine]) -> list[cst.EmptyLine]:
    """A removed statement's comment lines, with the blank lines between and before them
    (so a comment block keeps its distance from the code above), none after the last."""
    last = max((i for i, line in enumerate(lines) if line.comment is not None), default=-1)
    return list(lines[: last + 1])


def _pass(lines: Sequence[cst.EmptyLine]) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine([cst.Pass()], leading_lines=lines)


class _Carry:
    """Comment lines of a deleted statement, waiting for the next statement to hold them."""

    def __init__(self, lines: list[cst.EmptyLine]) -> None:
        self.lines = lines
