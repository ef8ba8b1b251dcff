"""Edits in transactions, tied to migration units, and the findings that go with them.

A site that cannot be finished drops its whole transaction and gets a TODO. A transaction
that belongs to a migration unit (it uses the unit's scaler) takes the unit down with it:
every other transaction of that unit in the file is dropped too, the initialize call is
marked, and the engine holds the unit back in every other file as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from apex2native.edits import EditSet
from apex2native.findings import MANUAL, Finding
from apex2native.index import TreeIndex


@dataclass(frozen=True)
class Blocker:
    """Why a unit could not be migrated: the first site that failed, in this file."""

    line: int
    code: str
    message: str
    scope: str = ""  # the def that holds the site ("" for module level)


class Transactions:
    def __init__(self, index: TreeIndex) -> None:
        self.index = index
        self.edits = EditSet()
        self._findings: list[tuple[object, Finding]] = []
        self._handled: list[tuple[object, cst.CSTNode]] = []
        self._todo_statements: set[cst.CSTNode] = set()
        self._made: list[tuple[object, cst.CSTNode, str]] = []  # markers this run writes
        self._existing: list[tuple[cst.CSTNode, str, Finding]] = []  # markers already there
        self._explained: set[cst.CSTNode] = set()
        self._unit_of: dict[int, str] = {}
        self._groups: dict[str, list[object]] = {}
        self._inits: dict[str, tuple[cst.CSTNode, str, str]] = {}
        self.failed: dict[str, Blocker] = {}  # units this file could not migrate
        self.blocked: set[str] = set()

    # groups and units --------------------------------------------------------------------
    def tag(self, group: object, unit: str) -> None:
        """`group` belongs to migration `unit` (it uses that unit's scaler)."""
        if not unit or id(group) in self._unit_of:
            return
        self._unit_of[id(group)] = unit
        self._groups.setdefault(unit, []).append(group)
        if unit in self.failed or unit in self.blocked:
            self.edits.drop(group)  # the unit is already given up: later sites stay too

    def unit_of(self, group: object) -> str | None:
        return self._unit_of.get(id(group))

    def register_init(
        self, unit: str, call: cst.CSTNode, code: str = "A2N102", kept: str = "amp.initialize kept"
    ) -> None:
        """Where the unit's `amp.initialize` is, if it is in this file (or what else starts
        the unit, with the code and words of the TODO it gets when the unit is held back)."""
        self._inits.setdefault(unit, (call, code, kept))

    def units(self) -> set[str]:
        """The units with a transaction in this file that survived."""
        return {u for u, groups in self._groups.items() if any(not self.dropped(g) for g in groups)}

    def touched_units(self) -> set[str]:
        return set(self._groups)

    def dropped(self, group: object) -> bool:
        return self.edits.is_dropped(group)

    # findings ----------------------------------------------------------------------------
    def note(self, group: object, node: cst.CSTNode, code: str, message: str, tier: str) -> None:
        """Report a change (it disappears with its transaction)."""
        self._findings.append((group, Finding(self.index.line(node), code, message, tier)))

    def todo(self, node: cst.CSTNode, code: str, message: str) -> None:
        """Mark the statement holding `node` for a person, and report it."""
        group = object()
        stmt = self.index.statement_of(node)
        if any(s is stmt and t == f"{code} {message}" for _, s, t in self._made):
            return  # `import amp_C; import amp_C`: one marker, one TODO
        self.edits.todo(group, stmt, f"{code} {message}")
        self._made.append((group, stmt, f"{code} {message}"))
        self._findings.append(
            (group, Finding(self.index.line(node), code, message, MANUAL, todo=True))
        )
        self._todo_statements.add(stmt)

    def existing_todo(self, stmt: cst.CSTNode, code: str, message: str) -> None:
        """A marker already in the file (from an earlier run), reported unless re-made now."""
        finding = Finding(self.index.line(stmt), code, message, MANUAL, todo=True)
        self._existing.append((stmt, f"{code} {message}", finding))

    def has_todo(self, node: cst.CSTNode) -> bool:
        return self.index.statement_of(node) in self._todo_statements

    def findings(self) -> list[Finding]:
        """The surviving findings; a marker an earlier run left and this run makes again
        on the same statement is one TODO, not two."""
        made = {(stmt, text) for group, stmt, text in self._made if not self.dropped(group)}
        old = [f for stmt, text, f in self._existing if (stmt, text) not in made]
        return sorted([*(f for group, f in self._findings if not self.dropped(group)), *old])

    # handling ----------------------------------------------------------------------------
    def handle(self, group: object, ref: cst.CSTNode) -> None:
        """Record that a rule rewrote the apex reference `ref` (unless `group` is dropped)."""
        self._handled.append((group, ref))

    def handled(self) -> set[cst.CSTNode]:
        return {node for group, node in self._handled if not self.dropped(group)}

    def explained(self, ref: cst.CSTNode) -> bool:
        return ref in self._explained or self.has_todo(ref)

    # failure -----------------------------------------------------------------------------
    def fail(self, group: object, node: cst.CSTNode, code: str, message: str) -> None:
        """Abandon a transaction: its edits are dropped and the site gets a TODO.

        When the transaction belongs to a unit, the whole unit is abandoned in this file (and
        reported, so the engine holds it back everywhere): the file stays consistent apex
        code around the TODO, and a second run gives the same result.
        """
        self.edits.drop(group)
        self.todo(node, code, message)
        dropped = [group]
        unit = self.unit_of(group)
        if unit is not None:
            func = self.index.enclosing_function(node)
            scope = self.index.qualname(func) if func is not None else ""
            self.failed.setdefault(unit, Blocker(self.index.line(node), code, message, scope))
            dropped += self._drop_unit(
                unit, f"a use of its scaler could not be migrated (see the {code} TODO)"
            )
        self._explain(dropped)

    def block(self, unit: str, reason: str) -> None:
        """Hold `unit` back in this file: every transaction of it is dropped."""
        self.blocked.add(unit)
        self._explain(self._drop_unit(unit, reason))

    def _drop_unit(self, unit: str, reason: str) -> list[object]:
        dropped = []
        for other in self._groups.get(unit, []):
            if not self.dropped(other):
                self.edits.drop(other)
                dropped.append(other)
        if unit in self._inits:
            init, code, kept = self._inits[unit]
            if not self.has_todo(init):
                self.todo(init, code, f"{kept}: {reason}")
        return dropped

    def _explain(self, dropped: list[object]) -> None:
        """apex references the dropped transactions had taken are explained by the TODOs."""
        ids = {id(g) for g in dropped}
        self._explained.update(ref for g, ref in self._handled if id(g) in ids)
