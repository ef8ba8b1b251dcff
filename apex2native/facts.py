"""What the repo-wide plan tells the rules of one file (plain data, sent to worker processes)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScalerSpec:
    """How a scaler created elsewhere behaves, as far as its users need to know.

    `runtime`: autocast follows the scaler (`enabled=scaler.is_enabled()`), because the opt
    level or the enabled flag is only known at run time.
    """

    origin: str
    autocast: bool = True
    runtime: bool = False
    update_args: str = ""
    conditions: tuple[str, ...] = ()
    level_hints: tuple[str, ...] = ()


@dataclass
class FileFacts:
    """The plan's decisions for one file, keyed by function or class qualified names."""

    module: str = ""
    params: dict[str, tuple[str, ScalerSpec]] = field(default_factory=dict)
    callees: dict[str, str] = field(default_factory=dict)
    returns: dict[str, ScalerSpec] = field(default_factory=dict)
    helpers: set[str] = field(default_factory=set)
    unpacks: dict[str, ScalerSpec] = field(default_factory=dict)
    inherited: dict[str, tuple[str, ScalerSpec]] = field(default_factory=dict)
    evaluation: dict[str, tuple[tuple[str, ...], ScalerSpec]] = field(default_factory=dict)
    fallback: dict[str, ScalerSpec] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(
            (
                self.params,
                self.callees,
                self.returns,
                self.helpers,
                self.unpacks,
                self.inherited,
                self.evaluation,
                self.fallback,
            )
        )
