"""Pair the entries of two series by what they belong to, not by how many calls came before.

A correct rewrite may read the gradients at other micro-steps than the original did (clipping
moved to the step boundary under gradient accumulation records one clip norm per step instead
of one per micro-step). Entries are therefore paired by their key (step, micro-step, k); the
entries only one side has are kept apart and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .trace import Series


@dataclass
class Pairing:
    """The paired entries of both sides (equal length, in the original's order) and the
    indices of the entries that only one side recorded."""

    a: Series
    b: Series
    only_a: list[int] = field(default_factory=list)
    only_b: list[int] = field(default_factory=list)

    @property
    def extras(self) -> bool:
        return bool(self.only_a or self.only_b)


def pair(sa: Series, sb: Series) -> Pairing:
    """Entries with the same key on both sides, plus what is left over on each."""
    index_b = {key: j for j, key in enumerate(sb.key_list())}
    matched: list[tuple[int, int]] = []
    only_a: list[int] = []
    for i, key in enumerate(sa.key_list()):
        j = index_b.pop(key, None)
        if j is None:
            only_a.append(i)
        else:
            matched.append((i, j))
    return Pairing(
        sa.subset([i for i, _ in matched]),
        sb.subset([j for _, j in matched]),
        only_a,
        sorted(index_b.values()),
    )


def same_structure(sa: Series, sb: Series) -> int | None:
    """None when both sides recorded entries with the same keys in the same order; else the
    index of the first entry where they differ."""
    ka, kb = sa.key_list(), sb.key_list()
    if ka == kb:
        return None
    return next((i for i, (x, y) in enumerate(zip(ka, kb)) if x != y), min(len(ka), len(kb)))


def aligned_to(keys: list[tuple], sc: Series) -> Series:
    """The entries of `sc` for the given keys, None where `sc` has no such entry."""
    by_key = {key: i for i, key in enumerate(sc.key_list())}
    out = Series(sc.name, sc.kind)
    for key in keys:
        i = by_key.get(key)
        out.add(None if i is None else sc.values[i], key[0] if key else 0, key)
    return out


def describe_extras(sa: Series, sb: Series, p: Pairing) -> str:
    """ "original recorded 15, rewritten 5; only in the original: 10 at micro-steps 0, 1"."""
    parts = [f"original recorded {len(sa.values)}, rewritten {len(sb.values)}"]
    for label, series, indices in (("original", sa, p.only_a), ("rewritten", sb, p.only_b)):
        if not indices:
            continue
        keys = series.key_list()
        micros = sorted({keys[i][1] for i in indices if len(keys[i]) > 2})
        where = f" at micro-steps {', '.join(map(str, micros))}" if micros else ""
        parts.append(f"only in the {label}: {len(indices)}{where}")
    return "; ".join(parts)
