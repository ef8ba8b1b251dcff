"""The repository-wide check, run on the rewritten texts before anything is written.

It works like a linker: imports of project names still resolve, calls fit changed
signatures, no flag is used as the amp module, no apex.amp use is left next to a removed
initialize, autocast follows the scaler's switch, and on every path the backward comes
before `unscale_`, which comes before the gradient reads. Each violation names the migration
unit it holds back and where to put the TODO marker.
"""

from __future__ import annotations

from apex2native.consistency.flags import check_flags
from apex2native.consistency.imported_flags import check_imported_flags
from apex2native.consistency.imports import check_imports
from apex2native.consistency.leftover_apex import check_leftover_apex
from apex2native.consistency.ordering import check_ordering
from apex2native.consistency.repo import RepoView, Violation
from apex2native.consistency.signatures import check_signatures
from apex2native.consistency.switches import check_switches

CHECKS = (
    check_imports,
    check_signatures,
    check_flags,
    check_leftover_apex,
    check_imported_flags,
    check_switches,
    check_ordering,
)


def check_repository(plan, outcomes, blocked: dict[str, str]) -> list[Violation]:
    """Every violation in the rewritten repository (`outcomes`: path -> FileOutcome)."""
    view = RepoView(plan, outcomes, blocked)
    found: list[Violation] = []
    for check in CHECKS:
        found.extend(check(view))
    return found


__all__ = ["Violation", "check_repository"]
