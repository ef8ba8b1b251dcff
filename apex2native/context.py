"""What the rules of one file share, each concern in its own object.

- `index`: the tree (parents, order, scopes, lines), built once per parse (`index.py`);
- `names`: which expressions are apex (`names.py`);
- `reach`: the scalers and which one a site reaches (`reach.py`);
- `tx`: edits in transactions tied to migration units, and the findings (`transactions.py`);
- `facts`: what the repo-wide plan decided for this file (`facts.py`).
"""

from __future__ import annotations

import libcst as cst

from apex2native.codegen import CodeGen
from apex2native.facts import FileFacts
from apex2native.findings import ApexClasses, UnitFacts
from apex2native.index import TreeIndex
from apex2native.names import ApexNames
from apex2native.options import Options
from apex2native.reach import Scaler, ScalerReach
from apex2native.transactions import Transactions

__all__ = ["FileContext", "Scaler"]


class FileContext:
    """Per-file state for one rewrite pass over one parsed module."""

    def __init__(
        self,
        module: cst.Module,
        options: Options,
        gen: CodeGen,
        facts: FileFacts | None = None,
        text: str | None = None,
    ) -> None:
        self.facts = facts if facts is not None else FileFacts()
        self.module = module
        self.options = options
        self.gen = gen
        self.index = TreeIndex(module, self.facts.module, self.facts.is_package, text)
        amp_params = {(q, p) for q, (p, _, _) in self.facts.amp_params.items()}
        self.names = ApexNames(
            self.index, self.facts.aliases, amp_params, frozenset(self.facts.factories)
        )
        self.reach = ScalerReach(self.index)
        self.tx = Transactions(self.index)
        self.sites: list = []  # scaled backward sites, extended by step/unscale/autocast
        self.needs_torch = False
        self.defined: set[str] = set()  # names a rule defines here in place of apex imports
        self.availability: list[object] = []  # folds that hold only once apex is gone
        self.unit_facts = UnitFacts()
        self.classes = ApexClasses()
        self._autocast: set[int] = set()

    def depend(self, scaler: Scaler, group: object) -> None:
        """`group` uses `scaler`: it lives and dies with the scaler's migration unit."""
        self.tx.tag(group, scaler.unit)

    def add_scaler(self, scaler: Scaler) -> None:
        """A scaler this file can use; its creation (if here) is its unit's transaction."""
        self.reach.add(scaler)
        self.tx.tag(scaler.group, scaler.unit)
        if scaler.unit:
            self.unit_facts.accesses.setdefault(scaler.access, set()).add(scaler.unit)
        if scaler.init_call is not None:
            self.tx.register_init(scaler.unit, scaler.init_call)

    def record_region(
        self, unit: str, enabled: str | None, node: cst.CSTNode, equivalent: bool = False
    ) -> None:
        """An autocast region was written for `unit`, switched by `enabled`.

        `equivalent`: the plan derived `enabled` from the scaler's own switch (renamed into
        this function's parameters, or a flag its callers pass)."""
        func = self.index.enclosing_function(node)
        qualname = self.index.qualname(func) if func is not None else ""
        self.unit_facts.switches.setdefault(unit, set()).add((enabled or "", qualname))
        if equivalent and enabled:
            self.unit_facts.equivalents.setdefault(unit, set()).add(enabled)

    def surviving_unit_facts(self) -> UnitFacts:
        """The unit facts of the units whose edits survived."""
        alive = self.tx.units()
        facts = self.unit_facts
        return UnitFacts(
            {a: us & alive for a, us in facts.accesses.items() if us & alive},
            {a: u for a, u in facts.flags.items() if u in alive},
            {u: r for u, r in facts.switches.items() if u in alive},
            {u: s for u, s in facts.scaler_switch.items() if u in alive},
            {u: e for u, e in facts.equivalents.items() if u in alive},
        )

    def needed_unit(self, node: cst.CSTNode) -> str | None:
        """The unit a site here belongs to: the plan's word, else the one scaler in reach."""
        func = self.index.enclosing_function(node)
        key = self.index.qualname(func) if func is not None else self.facts.module
        if key in self.facts.unreached:
            return self.facts.unreached[key]
        units = {s.unit for s in self.reach.reachable(node) if s.unit}
        return units.pop() if len(units) == 1 else None

    def unit_for(self, node: cst.CSTNode) -> str | None:
        """The unit a site needs, else the file's only unit: a site that changes what
        autocast does must go with the migration that brings autocast in."""
        unit = self.needed_unit(node)
        if unit:
            return unit
        units = self.facts.units()
        return next(iter(units)) if len(units) == 1 else None

    def refuse(self, node: cst.CSTNode, code: str, message: str, unit: str | None = None) -> None:
        """A site that cannot be migrated gets a TODO; the unit it belongs to fails with it."""
        unit = unit or self.needed_unit(node)
        if not unit:
            self.tx.todo(node, code, message)
            return
        group = object()
        self.tx.tag(group, unit)
        self.tx.fail(group, node, code, message)

    def autocast_hint(self) -> str:
        """The autocast call a TODO tells a person to wrap a forward pass in."""
        return self.gen.autocast(self.options.device_type, self.options.dtype)

    def mark_autocast(self, stmts) -> None:
        """Statements a rule has put under autocast (so no other rule wraps them again)."""
        self._autocast.update(id(s) for s in stmts)

    def in_autocast(self, node: cst.CSTNode) -> bool:
        if id(node) in self._autocast:
            return True
        for anc in self.index.ancestors(node):
            if id(anc) in self._autocast:
                return True
            if isinstance(anc, cst.With) and any(
                "autocast" in self.index.code(i.item) for i in anc.items
            ):
                return True
        return False

    def apex_remains(self, within: str = "apex") -> bool:
        """Some apex reference (under `within`: "apex.amp") is left as it was (so apex
        stays imported here), or left with a TODO (a rule that refused it still records
        it, so nothing marks it twice)."""
        handled = self.tx.handled()
        return any(
            (name == within or name.startswith(within + "."))
            and (
                (ref not in handled and not any(a in handled for a in self.index.ancestors(ref)))
                or self.tx.has_todo(ref)
            )
            for ref, name in self.names.refs()
        )
