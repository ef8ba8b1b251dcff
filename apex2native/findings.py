"""What a rewrite did to one file: the changes it made and the sites it left for a person."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

SAFE = "safe"
NUMERICS = "numerics"
MANUAL = "manual"


@dataclass(frozen=True, order=True)
class Finding:
    """One reported fact about a file, tied to a rule code and a line of the original."""

    line: int
    code: str
    message: str
    tier: str = SAFE
    todo: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class UnitFacts:
    """What a file's rewrite did for its migration units, for the repository check.

    accesses: how the file names a scaler (`scaler`, `self.scaler`) -> the units named so (two
    functions may each call their own unit's scaler `scaler`);
    flags: attributes that held the amp module and now hold a flag -> unit;
    switches: unit -> (the `enabled=` of an autocast region it wrote, "" for none; the
    qualified name of the function that holds the region);
    scaler_switch: unit -> the `enabled=` of the GradScaler it created ("" for none);
    equivalents: unit -> switch spellings the plan derived from the scaler's own.
    """

    accesses: dict[str, set[str]] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)
    switches: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    scaler_switch: dict[str, str] = field(default_factory=dict)
    equivalents: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class ApexClasses:
    """What a file did with apex's classes (DDP, SyncBatchNorm, fused optimizers, norms).

    kept: class -> why one of its calls here stays apex; moved: classes rewritten to torch
    here. One class must be one class across the run: an `isinstance` check rewritten to
    torch's DDP misses the apex DDP another file still builds.
    """

    kept: dict[str, str] = field(default_factory=dict)
    moved: set[str] = field(default_factory=set)
    # class -> why, for classes whose objects reach other files without an import (LARC
    # through an optimizer registry): they stay apex in every module of the run
    kept_in_run: dict[str, str] = field(default_factory=dict)


@dataclass
class FileOutcome:
    """The result of processing one file; `new_text` is None when nothing changes."""

    path: str
    status: str  # "changed", "unchanged", "skipped", "failed"
    old_text: str | None = None
    new_text: str | None = None
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    encoding: str = "utf-8"
    bom: bool = False
    units: set[str] = field(default_factory=set)  # migration units changed here
    touched: set[str] = field(default_factory=set)  # units with any site here
    failed_units: dict[str, tuple[int, str, str, str]] = field(default_factory=dict)
    held_back: dict[str, str] = field(default_factory=dict)  # unit -> why, units kept apex here
    unit_facts: UnitFacts = field(default_factory=UnitFacts)
    classes: ApexClasses = field(default_factory=ApexClasses)

    @property
    def todos(self) -> list[Finding]:
        return [f for f in self.findings if f.todo]
