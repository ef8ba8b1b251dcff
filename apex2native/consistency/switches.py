"""Autocast follows the scaler's switch: one `enabled` for every region of a unit.

A region without `enabled=` next to a scaler that can be off would train an fp32 run in
fp16 without loss scaling; a region switched by another condition would scale without
casting, or cast without scaling.
"""

from __future__ import annotations

from apex2native.consistency.repo import RepoView, Violation
from apex2native.scaler_options import normalize

CODE = "A2N100"


def check_switches(view: RepoView) -> list[Violation]:
    scaler_switch: dict[str, str] = {}
    accesses: dict[str, set[str]] = {}
    equivalents: dict[str, set[str]] = {}
    for path in view.changed:
        facts = view.outcomes[path].unit_facts
        scaler_switch.update(facts.scaler_switch)
        for access, units in facts.accesses.items():
            for unit in units:
                accesses.setdefault(unit, set()).add(access)
        for unit, spellings in facts.equivalents.items():
            equivalents.setdefault(unit, set()).update(spellings)
    found: list[Violation] = []
    for path in sorted(view.changed):
        for unit, regions in view.outcomes[path].unit_facts.switches.items():
            if unit in view.blocked or unit not in scaler_switch:
                continue
            switch = scaler_switch[unit]
            allowed = {normalize(f"{a}.is_enabled()") for a in accesses.get(unit, ())}
            allowed |= {normalize(e) for e in equivalents.get(unit, ())}
            if switch:
                allowed.add(normalize(switch))
            else:
                allowed.add("")
            for enabled, qualname in sorted(regions):
                if normalize(enabled) in allowed or (not enabled and "" in allowed):
                    continue
                message = (
                    f"an autocast region in {qualname or 'the module'} is switched by "
                    f"`{enabled or 'nothing'}`, but its scaler by `{switch or 'nothing'}`"
                )
                found.append(Violation(unit, CODE, message, path, view.old_line(path, qualname)))
    return found
