"""Migration options shared by the engine and every rule."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from apex2native.target import TorchVersion, pin_for


@dataclass(frozen=True)
class Options:
    """What the rewritten code targets and which rules run.

    `select`/`ignore` hold rule-code prefixes (ruff style): `A2N10` selects A2N100-A2N109.
    `target_torch` is the oldest torch the rewritten code must run on; None means no minimum
    is known, and the newest spellings are written (see `target.py`).
    """

    device_type: str = "cuda"
    dtype: str = "float16"
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    line_length: int | None = None
    target_torch: TorchVersion | None = None
    # deprecated torch.cuda.amp names some file of the run names in a string (a mock
    # target, a sys.modules key): their call sites keep the old spelling everywhere
    pinned_amp_names: frozenset[str] = frozenset()
    # apex class names some file of the run tests a class's name against (`type(m).__name__
    # in ("FusedLayerNorm", ...)`): moving the class to torch's changes that test
    name_tested: frozenset[str] = frozenset()
    # apex extension names (`fast_layer_norm`) that are modules of the project itself
    local_extensions: frozenset[str] = frozenset()

    def enabled(self, code: str) -> bool:
        """True when a rule code passes the select/ignore filters."""
        if self.select and not any(code.startswith(p) for p in self.select):
            return False
        return not any(code.startswith(p) for p in self.ignore)

    def for_file(self, path: str) -> Options:
        """The options for one file: a given target wins, else its project's torch pin."""
        if self.target_torch is not None:
            return self
        pin = pin_for(str(Path(path).resolve().parent))
        return self if pin is None else replace(self, target_torch=pin.target)
