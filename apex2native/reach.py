"""The GradScalers of one file: the ones it creates and the ones the plan hands it."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from apex2native.facts import ScalerSpec
from apex2native.index import TreeIndex


@dataclass
class Scaler:
    """One GradScaler, and how code reaches it.

    `access` is the expression that names it at a use site (`scaler`, `self.scaler`);
    `home` is the node whose body can reach it: a function, a class (for `self.` access)
    or the module. `unit` is the migration unit (initialize site) it belongs to.
    `unreachable_switch`: autocast must follow a condition this file cannot spell.
    """

    access: str
    home: cst.CSTNode
    optimizers: set[str]
    conditions: set[str] = field(default_factory=set)
    autocast_enabled: str | None = None  # code for autocast's enabled=, None: always on
    autocast: bool = True
    update_args: str = ""
    group: object = field(default_factory=object)
    init_call: cst.CSTNode | None = None
    unit: str = ""
    unreachable_switch: bool = False
    unreachable_update: bool = False  # its update(new_scale=...) reads names of another scope
    update_scope: cst.CSTNode | None = None  # where update_args' names are bound, if only there
    main_guard: bool = False  # made under `if __name__ == "__main__":`: not seen inside defs
    # a parameter that held an optimizer only for scaling (its name then): callers that pass
    # none leave it None, and its scaled backward stays under the test that it was given
    optional: str = ""

    @classmethod
    def from_spec(cls, access: str, home: cst.CSTNode, spec: ScalerSpec) -> Scaler:
        return cls(
            access,
            home,
            set(),
            conditions=set(spec.conditions),
            autocast_enabled=f"{access}.is_enabled()" if spec.runtime else None,
            autocast=spec.autocast,
            update_args=spec.update_args,
            unit=spec.unit,
            unreachable_switch=bool(spec.switch) and not spec.runtime,
            unreachable_update=spec.update_local,
        )


class ScalerReach:
    """Which scaler a use site reaches: innermost home first, matched by optimizer."""

    def __init__(self, index: TreeIndex) -> None:
        self.index = index
        self.scalers: list[Scaler] = []

    def add(self, scaler: Scaler) -> None:
        self.scalers.append(scaler)

    def reachable(self, node: cst.CSTNode) -> list[Scaler]:
        """Scalers whose name is in scope at `node`, innermost home first."""
        ancestors = list(self.index.ancestors(node))
        found = []
        for scaler in self.scalers:
            if isinstance(scaler.home, cst.ClassDef):
                prefix = scaler.access.split(".")[0]
                for anc in ancestors:
                    if (
                        isinstance(anc, cst.FunctionDef)
                        and self.index.enclosing_class(anc) is scaler.home
                    ):
                        params = anc.params.params
                        if params and params[0].name.value == prefix:
                            found.append((ancestors.index(anc), scaler))
                        break
            elif scaler.home in ancestors:
                if scaler.main_guard and any(isinstance(a, cst.FunctionDef) for a in ancestors):
                    continue
                found.append((ancestors.index(scaler.home), scaler))
        found.sort(key=lambda pair: pair[0])
        unique: dict[str, Scaler] = {}
        for _, scaler in found:
            unique.setdefault(scaler.access, scaler)
        return list(unique.values())

    def pick(self, node: cst.CSTNode, optimizers: set[str]) -> Scaler | None:
        """The scaler for a site that uses `optimizers`: the one made for them, else the only one."""
        reachable = self.reachable(node)
        matching = [s for s in reachable if s.optimizers & optimizers]
        if matching:
            return matching[0]
        return reachable[0] if len(reachable) == 1 else None
