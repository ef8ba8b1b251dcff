"""Migration options shared by the engine and every rule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    """What the rewritten code targets and which rules run.

    `select`/`ignore` hold rule-code prefixes (ruff style): `A2N10` selects A2N100-A2N109.
    """

    device_type: str = "cuda"
    dtype: str = "float16"
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    line_length: int | None = None

    def enabled(self, code: str) -> bool:
        """True when a rule code passes the select/ignore filters."""
        if self.select and not any(code.startswith(p) for p in self.select):
            return False
        return not any(code.startswith(p) for p in self.ignore)
