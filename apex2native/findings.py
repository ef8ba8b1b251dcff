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

    @property
    def todos(self) -> list[Finding]:
        return [f for f in self.findings if f.todo]
