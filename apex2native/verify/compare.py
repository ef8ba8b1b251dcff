"""Judge two (or three) recorded runs: exact, fp32-envelope or fixed-tolerance mode.

exact: every recorded float must be bitwise equal (PASS-EXACT); failing that, equal within
`near_rtol` with identical structure (PASS-NEAR). envelope: the rewrite may deviate from the
original by `factor` times the original's own deviation from its fp32 run, plus a floor.
fixed: fixed relative tolerances when no fp32 run exists.

Entries are paired by key (see `align.py`). Series that shape training (loss, scale, applied
steps, the gradients a step applied, parameters) must have the same entries on both sides. A
diagnostic (`clip_norm`) is compared where both sides recorded it, and the entries only one
side recorded are reported in the row (status `extra` when the paired values agree); they do
not fail the comparison.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from .align import aligned_to, describe_extras, pair, same_structure
from .tolerances import Tolerances
from .trace import Series, is_diagnostic

INFORMATIONAL_OUTSIDE_EXACT = ("loss_scale", "init_params")


@dataclass
class Row:
    """Outcome for one metric: the first entry where the sides differ, if any."""

    metric: str
    status: str
    compared: int
    index: int | None = None
    step: int | None = None
    original: Any = None
    rewritten: Any = None
    detail: str = ""
    seq: int | None = None
    extra: str = ""
    announced: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in ("differs", "count")

    @property
    def differs(self) -> bool:
        """Some paired value is not bitwise equal (whatever the mode made of it)."""
        return self.index is not None or self.status == "count"


@dataclass
class Comparison:
    """Verdict of one mode over all metric rows."""

    mode: str
    verdict: str
    rows: list[Row] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verdict.startswith("PASS")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def bitwise_equal(a: Any, b: Any) -> bool:
    """Equality of recorded values where NaN equals NaN (same float bits for our values)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(bitwise_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    return a == b


def rel_diff(a: float, b: float) -> float:
    """|a-b| / max(|a|,|b|), 0 for equal values (also equal infinities and NaNs)."""
    if bitwise_equal(a, b):
        return 0.0
    if not (_finite(a) and _finite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def near_equal(a: Any, b: Any, rtol: float) -> bool:
    """Near equality; params entries compare norm and sum only (not the byte hash)."""
    if isinstance(a, list) and isinstance(b, list):
        if len(a) == 3 and len(b) == 3 and isinstance(a[2], str):
            return near_equal(a[:2], b[:2], rtol)
        return len(a) == len(b) and all(near_equal(x, y, rtol) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or a == b
    return rel_diff(a, b) <= rtol


def _count_row(name: str, a: Series, b: Series) -> Row | None:
    """A series that shapes training must hold the same entries on both sides."""
    i = same_structure(a, b)
    if i is None:
        return None
    longer = a if i < len(a.values) else b
    detail = f"original recorded {len(a.values)}, rewritten {len(b.values)}"
    if len(a.values) == len(b.values):
        detail += f"; entry {i} belongs to another step or micro-step"
    return Row(
        name,
        "count",
        i,
        i,
        longer.steps[i] if i < len(longer.steps) else None,
        len(a.values),
        len(b.values),
        detail,
        seq=a.seq[i] if i < len(a.seq) else None,
    )


def _paired(name: str, sa: Series, sb: Series) -> tuple[Series, Series, str]:
    """A diagnostic's entries that both sides recorded, and what only one side recorded."""
    if not is_diagnostic(name):
        return sa, sb, ""
    p = pair(sa, sb)
    return p.a, p.b, describe_extras(sa, sb, p) if p.extras else ""


def _with_extra(row: Row, extra: str) -> Row:
    if extra:
        row.extra = extra
        if row.status == "equal":
            row.status = "extra"
    return row


def _first(pred, a: Series, b: Series) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a.values, b.values)) if not pred(x, y)), None)


def _row_at(name: str, status: str, a: Series, b: Series, i: int | None, detail: str = "") -> Row:
    if i is None:
        return Row(name, status, len(a.values), detail=detail)
    seq = a.seq[i] if i < len(a.seq) else None
    return Row(name, status, len(a.values), i, a.steps[i], a.values[i], b.values[i], detail, seq)


def compare_exact(a: dict[str, Series], b: dict[str, Series], tol: Tolerances) -> Comparison:
    """Bitwise equality of every series, with the documented near-equal fallback."""
    rows = []
    for name in _names(a, b):
        sa, sb = a.get(name, Series(name, "float")), b.get(name, Series(name, "float"))
        sa, sb, extra = _paired(name, sa, sb)
        count = _count_row(name, sa, sb)
        if count is not None:
            rows.append(count)
            continue
        rows.append(_with_extra(_exact_row(name, sa, sb, tol), extra))
    if any(r.failed for r in rows):
        verdict = "FAIL"
    elif any(r.status == "near" for r in rows):
        verdict = "PASS-NEAR"
    else:
        verdict = "PASS-EXACT"
    return Comparison("exact", verdict, rows)


def _exact_row(name: str, sa: Series, sb: Series, tol: Tolerances) -> Row:
    first = _first(bitwise_equal, sa, sb)
    if first is None:
        return _row_at(name, "equal", sa, sb, None)
    far = _first(lambda x, y: near_equal(x, y, tol.near_rtol), sa, sb)
    if far is None and tol.near_rtol > 0:
        worst = max(_entry_rel(x, y) for x, y in zip(sa.values, sb.values))
        return _row_at(name, "near", sa, sb, first, f"max rel diff {worst:.3g}")
    i = first if far is None else far
    return _row_at(name, "differs", sa, sb, i, _describe(sa.values[i], sb.values[i]))


def _entry_rel(x: Any, y: Any) -> float:
    if isinstance(x, list) and isinstance(y, list):
        vals = [_entry_rel(p, q) for p, q in zip(x, y) if not isinstance(p, str)]
        return max(vals, default=0.0)
    if isinstance(x, bool) or x is None or y is None:
        return 0.0 if x == y else math.inf
    return rel_diff(x, y)


def _describe(x: Any, y: Any) -> str:
    rel = _entry_rel(x, y)
    return "non-finite on one side" if math.isinf(rel) else f"rel diff {rel:.3g}"


def _names(*sides: dict[str, Series]) -> list[str]:
    names: list[str] = []
    for side in sides:
        names.extend(n for n in side if n not in names)
    return names


def _informational(name: str) -> bool:
    return name in INFORMATIONAL_OUTSIDE_EXACT


def _is_value_metric(name: str) -> bool:
    return name in ("loss", "clip_norm") or name.startswith("grad_norm/")


def _value_pairs(sa: Series, sb: Series):
    for i, (x, y) in enumerate(zip(sa.values, sb.values)):
        yield i, x, y


def _check_values(name, sa, sb, limit) -> Row:
    """Compare entry by entry: None/non-finite must match; finite values within limit(i)."""
    worst = 0.0
    for i, x, y in _value_pairs(sa, sb):
        if x is None or y is None or not (_finite(x) and _finite(y)):
            if not bitwise_equal(x, y) and not (
                x is not None and y is not None and not _finite(x) and not _finite(y)
            ):
                return _row_at(name, "differs", sa, sb, i, "non-finite or missing on one side")
            continue
        rel = abs(y - x) / abs(x) if x != 0 else (0.0 if y == 0 else math.inf)
        bound = limit(i)
        worst = max(worst, rel / bound if bound > 0 else (0.0 if rel == 0 else math.inf))
        if rel > bound:
            return _row_at(name, "differs", sa, sb, i, f"rel diff {rel:.3g} > allowed {bound:.3g}")
    first = _first(bitwise_equal, sa, sb)
    return _row_at(name, "within", sa, sb, first, f"worst {worst:.3g} of allowed")


def _median_ratio(sa: Series, sb: Series) -> float | None:
    ratios = [y / x for _, x, y in _value_pairs(sa, sb) if _finite(x) and _finite(y) and x != 0]
    return statistics.median(ratios) if ratios else None


def _envelope(sa: Series, sc: Series):
    """env(k) = max over j<=k of |A_j - C_j| / |C_j|, over finite pairs."""
    env, running = [], 0.0
    for x, c in zip(sa.values, sc.values):
        if _finite(x) and _finite(c) and c != 0:
            running = max(running, abs(x - c) / abs(c))
        env.append(running)
    return env


def _compare_tolerant(a, b, c, tol: Tolerances, mode: str) -> Comparison:
    rows = []
    for name in _names(a, b):
        sa, sb = a.get(name, Series(name, "float")), b.get(name, Series(name, "float"))
        sa, sb, extra = _paired(name, sa, sb)
        row = _tolerant_row(name, sa, sb, c, tol, mode)
        if row is not None:
            rows.append(_with_extra(row, extra))
    failed = any(r.failed for r in rows)
    verdict = "FAIL" if failed else f"PASS-{mode.upper()}"
    return Comparison(mode, verdict, rows)


def _tolerant_row(name, sa, sb, c, tol: Tolerances, mode: str) -> Row | None:
    count = _count_row(name, sa, sb)
    if count is not None and not _informational(name):
        return count
    if _informational(name):
        first = _first(bitwise_equal, sa, sb) if count is None else count.index
        status = "equal" if first is None and count is None else "info"
        return _row_at(name, status, sa, sb, None if count else first, "not judged in this mode")
    if name.startswith("applied/"):
        return _compare_masks(name, sa, sb, tol, mode)
    if name == "final_params":
        return _compare_params(sa, sb, c.get(name) if c else None, tol, mode)
    if not _is_value_metric(name):
        return None
    if mode == "envelope":
        sc = aligned_to(sa.key_list(), c.get(name, Series(name, "float")))
        env = _envelope(sa, sc)
        env += [env[-1] if env else 0.0] * (len(sa.values) - len(env))
        row = _check_values(
            name, sa, sb, lambda i, env=env: tol.envelope_factor * env[i] + tol.envelope_floor
        )
    else:
        rtol = tol.fixed_grad_rtol if name != "loss" else tol.fixed_loss_rtol
        first_rtol = tol.fixed_first_loss_rtol if name == "loss" else rtol
        row = _check_values(name, sa, sb, lambda i, a=first_rtol, r=rtol: a if i == 0 else r)
    if not row.failed and name != "loss":
        ratio = _median_ratio(sa, sb)
        if ratio is not None and not tol.median_ratio_low <= ratio <= tol.median_ratio_high:
            row = _row_at(name, "differs", sa, sb, None, f"median ratio {ratio:.4g}")
    return row


def _compare_masks(name, sa, sb, tol, mode) -> Row:
    first = _first(bitwise_equal, sa, sb)
    if first is None:
        return _row_at(name, "equal", sa, sb, None)
    if mode == "fixed":
        skips_a = sum(1 for v in sa.values if v is False)
        skips_b = sum(1 for v in sb.values if v is False)
        if abs(skips_a - skips_b) <= tol.fixed_skip_slack:
            return _row_at(name, "within", sa, sb, first, f"skips {skips_a} vs {skips_b}")
    return _row_at(name, "differs", sa, sb, first, "skip masks diverge")


def _compare_params(sa, sb, sc, tol, mode) -> Row:
    norms = Series("final_params", "float", [v[0] for v in sa.values], list(sa.steps))
    norms_b = Series("final_params", "float", [v[0] for v in sb.values], list(sb.steps))
    if mode == "envelope" and sc is not None and len(sc.values) == len(sa.values):
        norms_c = [v[0] for v in sc.values]
        bounds = [
            tol.envelope_factor * (abs(x - c) / abs(c) if c else 0.0) + tol.envelope_floor
            for x, c in zip(norms.values, norms_c)
        ]
        return _check_values("final_params", norms, norms_b, lambda i: bounds[i])
    return _check_values("final_params", norms, norms_b, lambda i: tol.fixed_loss_rtol)


def compare_envelope(a, b, c, tol: Tolerances) -> Comparison:
    """Real apex vs rewrite, judged against the original's own fp32 run `c`."""
    return _compare_tolerant(a, b, c, tol, "envelope")


def compare_fixed(a, b, tol: Tolerances) -> Comparison:
    """Fixed tolerances when no fp32 run exists."""
    return _compare_tolerant(a, b, None, tol, "fixed")
