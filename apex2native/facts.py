"""What the repo-wide plan tells the rules of one file (plain data, sent to worker processes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from apex2native.native_twins import Twin


class Handed(NamedTuple):
    """A call site that hands the scaler where it handed amp, or an optimizer that only
    scaled the loss (`replaces`: that optimizer as passed; empty for amp)."""

    arg: str  # the position ("2") or keyword of the call that carried it
    param: str  # the callee's parameter that received it
    new: str  # that parameter's new name
    unit: str
    replaces: str = ""


@dataclass(frozen=True)
class ScalerSpec:
    """How a scaler created elsewhere behaves, as far as its users need to know.

    `runtime`: autocast follows the scaler (`enabled=scaler.is_enabled()`), because the opt
    level or the enabled flag is only known at run time. `unit`: the migration unit (the
    initialize site, `path:line`) the scaler belongs to.
    """

    origin: str
    autocast: bool = True
    runtime: bool = False
    update_args: str = ""
    update_local: bool = False  # update_args only make sense where the scaler is made
    conditions: tuple[str, ...] = ()
    level_hints: tuple[str, ...] = ()
    unit: str = ""
    switch: str | None = None  # autocast's enabled= where the scaler is made (None: always)
    enabled: str | None = None  # the GradScaler's enabled= as written there (None: always)


@dataclass(frozen=True)
class InitDecision:
    """What one `amp.initialize` statement becomes, decided by the plan.

    kind: `scaler` (a GradScaler is created), `inference` (no optimizer: the call goes and
    the forward passes need autocast), `problem` (left as it is, with `problem` as the TODO).
    A `companion` inference initialize (an EMA or teacher model next to the trained one)
    belongs to that scaler's unit and follows its switch.
    """

    line: int
    anchor: tuple[str, int] = ("", 0)  # (enclosing def or module, n-th initialize in it)
    home: str = ""  # qualname of the function, class (self attribute) or module
    kind: str = "problem"
    problem: str | None = None
    access: str = ""
    kwargs: tuple[tuple[str, str], ...] = ()
    messages: tuple[tuple[str, str], ...] = ()
    rebind: str | None = None
    outer_line: int = 0
    optimizers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    autocast_enabled: str | None = None
    spec: ScalerSpec | None = None
    once: str | None = None  # a one-shot guard the creation stays under (`not self.ready`)
    companion: str = ""  # inference: the scaler made just before for the trained model
    # `amp._amp_state.loss_scalers[0]._loss_scale = x` and the like, folded into it
    preset_lines: tuple[int, ...] = ()
    # `opt = handle.wrap_optimizer(opt)` of the old API: (line, what replaces it, or None)
    wraps: tuple[tuple[int, str | None], ...] = ()
    # another arm of the same `if`/`elif`/`else` makes the scaler, before the `if`: this
    # call only goes (its rebinding stays)
    follows: bool = False


@dataclass
class FileFacts:
    """The plan's decisions for one file, keyed by function or class qualified names.

    `inits`: what each `amp.initialize` becomes, by (enclosing def, ordinal), which stays
    true when lines move; `blocked`: migration units that must stay apex in this run, with
    the reason; `marks`: TODO markers for given lines of the original (the blockers the
    repository check found here);
    `aliases`: project names that stand for apex (`base_trainer.amp` -> `apex.amp`);
    `exports`: apex names other modules import from this one (kept while they do).
    """

    module: str = ""
    is_package: bool = False
    inits: dict[tuple[str, int], InitDecision] = field(default_factory=dict)
    params: dict[str, tuple[str, ScalerSpec]] = field(default_factory=dict)
    # flags: qualname -> (parameter, unit, default or None): autocast on/off from the caller
    flags: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)
    # callees: raw callee -> (parameter, unit, value passed: the scaler's access if "")
    callees: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    returns: dict[str, ScalerSpec] = field(default_factory=dict)
    helpers: dict[str, tuple[str, str]] = field(default_factory=dict)  # raw -> (unit, target)
    unpacks: dict[str, tuple[str, ScalerSpec]] = field(default_factory=dict)  # -> (access, spec)
    inherited: dict[str, tuple[str, ScalerSpec]] = field(default_factory=dict)
    # evaluation: qualname -> (model parameters, spec, autocast's enabled= there, None: always)
    evaluation: dict[str, tuple[tuple[str, ...], ScalerSpec, str | None]] = field(
        default_factory=dict
    )
    unreached: dict[str, str] = field(default_factory=dict)  # qualname -> unit it needs
    # qualname -> why the plan does not bring it a scaler (for the TODO at its apex uses)
    refusals: dict[str, str] = field(default_factory=dict)
    # amp handed in as an argument: qualname -> (parameter, its new name, spec): the
    # parameter holds the scaler from now on, and its uses are migrated like `amp.*`
    amp_params: dict[str, tuple[str, str, ScalerSpec]] = field(default_factory=dict)
    # call sites that hand over amp, or an optimizer that only scaled: raw callee -> entries
    handed: dict[str, list[Handed]] = field(default_factory=dict)
    # defs whose scaler may be None: amp_params whose parameter held an optimizer only for
    # scaling (a caller may pass none), and params some calls need not pass (`bare_calls`)
    optional_scalers: set[str] = field(default_factory=set)
    # calls that pass no scaler to an optional one: (raw callee, calling function)
    bare_calls: set[tuple[str, str]] = field(default_factory=set)
    notes: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    marks: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    # apex classes another file of the same program keeps apex, and why
    kept_classes: dict[str, str] = field(default_factory=dict)
    # apex classes some file of the run keeps apex whose objects cross files unseen (a
    # registry, an attribute), and why: they stay apex wherever a file is not an entry script
    kept_in_run: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    exports: set[str] = field(default_factory=set)
    # callees as the file names them (`utils.clip`, `main.Trainer.clip`) that read or change
    # gradients, in their own body or through a function they call
    clippers: set[str] = field(default_factory=set)
    # callees as the file names them that run a backward of their own no scaler scales
    # (`add_reg(model)`: `reg.backward()`) -> whether they also scale a loss of their own
    backward_helpers: dict[str, bool] = field(default_factory=dict)
    # callees as the file names them that step an optimizer handed to them: raw callee ->
    # (its parameters as a call fills them, the ones it steps, the file it is in)
    steppers: dict[str, tuple[tuple[str, ...], frozenset[str], str]] = field(default_factory=dict)
    # calls of defs whose scaled loss is a parameter: raw callee -> (parameter, its position
    # as a call fills it or -1, unit): the caller runs the forward that makes that argument
    forwards: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    # defs whose loss is a parameter, every caller of which the run saw: their callers run
    # the forward under autocast
    forwarded: set[str] = field(default_factory=set)
    # names other project modules import from this one ("*": a star import or `import mod`,
    # which may read any of them): a flag or a star import they read must keep its meaning
    imported: set[str] = field(default_factory=set)
    # names modules that star-import this one read without binding them (`from layers
    # import *` then `FusedLayerNorm(8)`): the imports that bind them here must stay
    star_reads: set[str] = field(default_factory=set)
    # the files that read those names, through star imports (chains of them too)
    star_readers: set[str] = field(default_factory=set)
    # the "*" in `imported` comes from star imports alone (no module passes this one on
    # whole): what other modules read of it is `star_reads`, as precisely as the run sees
    star_only: bool = False
    # other modules' amp probe flags as this file spells them (`HAS_APEX` imported from
    # utils, `utils.HAS_APEX`): always True once native AMP replaces apex
    probe_flags: set[str] = field(default_factory=set)
    # methods of a class that return an instance of it, as the file names them: a variable
    # filled by one holds the class (`state = TrainingState.load_state(path)`)
    factories: set[str] = field(default_factory=set)
    # apex defs routed to their native twin (A2N119): name -> (the unit the routing is,
    # linked to every initialize of the program so that they migrate or stay together, twin)
    routed: dict[str, tuple[str, Twin]] = field(default_factory=dict)
    # classes that make a scaler of their own, switched like their scaled backward:
    # class -> (the switch attribute, the scaler's access, its enabled= code, unit)
    owned: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)

    def units(self) -> set[str]:
        """Every migration unit the plan links to this file."""
        specs = [d.spec for d in self.inits.values() if d.spec is not None]
        specs += [spec for _, spec in self.params.values()]
        specs += [*self.returns.values(), *(spec for _, spec in self.unpacks.values())]
        specs += [spec for _, spec in self.inherited.values()]
        specs += [spec for _, spec, _ in self.evaluation.values()]
        units = {s.unit for s in specs}
        units |= {unit for _, unit, _ in self.callees.values()}
        units |= {unit for _, unit, _ in self.flags.values()}
        units |= {unit for _, _, unit in self.forwards.values()}
        units |= {spec.unit for _, _, spec in self.amp_params.values()}
        units |= {h.unit for entries in self.handed.values() for h in entries}
        units |= {unit for unit, _ in self.helpers.values()} | set(self.unreached.values())
        units |= {unit for unit, _ in self.routed.values()}
        units |= {unit for _, _, _, unit in self.owned.values()}
        return {u for u in units if u}

    def __bool__(self) -> bool:
        """True when the file has something to do beyond its own text (a repo decision)."""
        return any(
            (
                self.params,
                self.flags,
                self.callees,
                self.forwards,
                self.returns,
                self.helpers,
                self.unpacks,
                self.inherited,
                self.evaluation,
                self.unreached,
                self.refusals,
                self.amp_params,
                self.handed,
                self.marks,
                self.aliases,
                self.notes,
                self.routed,
                self.owned,
            )
        )
