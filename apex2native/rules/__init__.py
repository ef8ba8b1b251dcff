"""The rules, in the order they plan their edits on a file.

Order matters where one rule extends another's transaction: `initialize` creates the scalers
that `scale_loss` sites pick, whose steps (`step`), gradient reads (`unscale`) and forward
pass (`autocast`) belong to the same site. `leftovers` runs last and marks what nobody took.
"""

from __future__ import annotations

from apex2native.options import Options
from apex2native.rules.amp_switch import AmpSwitch
from apex2native.rules.amp_value import AmpValue
from apex2native.rules.apex_modules import ApexModules
from apex2native.rules.apex_requirement import ApexRequirement
from apex2native.rules.autocast import Autocast
from apex2native.rules.base import Rule
from apex2native.rules.deprecated_amp import DeprecatedAmp
from apex2native.rules.disable_casts import DisableCasts
from apex2native.rules.dual_backend import DualBackend
from apex2native.rules.evaluation import Evaluation
from apex2native.rules.fp16_optimizer import FP16Optimizer
from apex2native.rules.imports import Imports
from apex2native.rules.initialize import Initialize
from apex2native.rules.larc import Larc
from apex2native.rules.leftovers import Leftovers
from apex2native.rules.master_params import MasterParams
from apex2native.rules.native_twin import NativeTwin
from apex2native.rules.optional_apex import OptionalApex
from apex2native.rules.owned_scaler import OwnedScaler
from apex2native.rules.registrations import Registrations
from apex2native.rules.scale_loss import ScaleLoss
from apex2native.rules.state_dict import StateDict
from apex2native.rules.step import Step
from apex2native.rules.syncbn_process_group import SyncBNProcessGroup
from apex2native.rules.thread_scaler import ThreadScaler
from apex2native.rules.unscale import Unscale

ALL_RULES: tuple[type[Rule], ...] = (
    DualBackend,
    NativeTwin,
    Imports,
    AmpValue,
    Initialize,
    OwnedScaler,
    ThreadScaler,
    AmpSwitch,
    ScaleLoss,
    FP16Optimizer,
    Step,
    Unscale,
    Autocast,
    Evaluation,
    MasterParams,
    StateDict,
    DisableCasts,
    Registrations,
    OptionalApex,
    ApexRequirement,
    ApexModules,
    SyncBNProcessGroup,
    Larc,
    DeprecatedAmp,
    Leftovers,
)

# A scaled backward without its step and unscale would train on scaled gradients; the step
# and unscale rules only extend the sites that these rules make.
REQUIRED_WITH = {"A2N103": ("A2N104", "A2N105"), "A2N117": ("A2N104", "A2N105")}


def rules_for(select: tuple[str, ...] = (), ignore: tuple[str, ...] = ()) -> list[Rule]:
    """Instances of the rules that pass the select/ignore code prefixes."""
    options = Options(select=select, ignore=ignore)
    codes = {r.code for r in ALL_RULES if options.enabled(r.code)}
    for code, required in REQUIRED_WITH.items():
        if code in codes:
            codes.update(required)
    for required in {r for rs in REQUIRED_WITH.values() for r in rs}:
        if not any(required in rs and code in codes for code, rs in REQUIRED_WITH.items()):
            codes.discard(required)  # it only extends the sites its parent rules make
    return [r() for r in ALL_RULES if r.code in codes]


def rule_by_code(code: str) -> type[Rule] | None:
    return next((r for r in ALL_RULES if r.code == code.upper()), None)
