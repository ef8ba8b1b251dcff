"""A2N205: apex's LARC wrapper, which torch lacks, becomes a class of the file that uses it."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule

SPELLINGS = frozenset({"apex.parallel.LARC", "apex.parallel.LARC.LARC"})
CANONICAL = "apex.parallel.LARC"

# The algorithm of apex.parallel.LARC (apex-api.md, 13.2), step for step in the same
# arithmetic order, so that it computes the numbers apex did.
TEMPLATE = '''
class {name}:
    """Layer-wise adaptive rate control around an optimizer (was apex.parallel.LARC).

    Before the wrapped optimizer steps, every gradient is scaled by
    trust_coefficient * |p| / (|g| + weight_decay * |p| + eps), capped so that the step is
    no larger than the group's learning rate when `clip`; the group's weight decay is
    folded into the gradient first and is off while the wrapped optimizer steps.
    """

    def __init__(self, optimizer, trust_coefficient=0.02, clip=True, eps=1e-8):
        self.optim = optimizer
        self.trust_coefficient = trust_coefficient
        self.eps = eps
        self.clip = clip

    def __repr__(self):
        return repr(self.optim)

    @property
    def state(self):
        return self.optim.state

    @property
    def param_groups(self):
        return self.optim.param_groups

    @param_groups.setter
    def param_groups(self, value):
        self.optim.param_groups = value

    def state_dict(self):
        return self.optim.state_dict()

    def load_state_dict(self, state_dict):
        self.optim.load_state_dict(state_dict)

    def zero_grad(self):
        self.optim.zero_grad()

    def add_param_group(self, param_group):
        self.optim.add_param_group(param_group)

    def step(self):
        weight_decays = []
        with torch.no_grad():
            for group in self.optim.param_groups:
                weight_decay = group.get("weight_decay", 0)
                weight_decays.append(weight_decay)
                group["weight_decay"] = 0
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    param_norm = torch.norm(p)
                    grad_norm = torch.norm(p.grad)
                    if param_norm != 0 and grad_norm != 0:
                        adaptive_lr = (
                            self.trust_coefficient
                            * param_norm
                            / (grad_norm + param_norm * weight_decay + self.eps)
                        )
                        if self.clip:
                            adaptive_lr = min(adaptive_lr / group["lr"], 1)
                        p.grad += weight_decay * p
                        p.grad *= adaptive_lr
        self.optim.step()
        for group, weight_decay in zip(self.optim.param_groups, weight_decays):
            group["weight_decay"] = weight_decay
'''

# a guard around the imports (`try: from apex.parallel.LARC import LARC`): still the preamble
IMPORT_LINE = m.SimpleStatementLine(body=[m.AtLeastN(m.Import() | m.ImportFrom(), n=1)])


class Larc(Rule):
    """apex's LARC wrapper becomes a class of the same name defined in the file.

    Before:
        from apex.parallel.LARC import LARC
        optimizer = LARC(optimizer=optimizer, trust_coefficient=0.001, clip=False)
    After:
        class LARC:
            ...  # the same algorithm, written out after the imports
        optimizer = LARC(optimizer=optimizer, trust_coefficient=0.001, clip=False)

    torch has no LARC, and apex's was removed with apex.parallel. The class written in its
    place takes the same arguments, keeps the same public surface (`optim`, `param_groups`,
    `state`, `state_dict`, `zero_grad`, `step`) and computes the same numbers in the same
    order; its state dict is the wrapped optimizer's, as apex's was, so checkpoints load.
    `scaler.step(optimizer)` unscales the gradients before the class reads their norms, as
    apex's amp did. Only a file that constructs LARC and does nothing else with it moves:
    a type test, a base class or a value handed around would compare two classes (this
    file's, and apex's or another file's), so those uses leave LARC with a TODO, and so
    does a name the file binds to something else.
    """

    code = "A2N205"
    name = "larc"
    tier = SAFE
    summary = "apex.parallel.LARC -> the same wrapper, defined in the file (torch has none)"

    def apply(self, ctx: FileContext) -> None:
        refs = [ref for ref, name in ctx.names.refs() if name in SPELLINGS]
        if not refs:
            return
        name = _class_name(refs)
        why = self._refusal(ctx, refs, name)
        if why is not None:
            for ref in refs:
                ctx.tx.todo(ref, self.code, f"LARC stays apex: {why}; port it by hand")
            return
        group = self._group = object()
        self._refs = refs
        for ref in refs:
            if not isinstance(ref, cst.Name):
                ctx.tx.edits.replace_node(group, ref, lambda _u, n=name: cst.Name(n))
            ctx.tx.handle(group, ref)
        after = _preamble_end(ctx.module)
        if after is not None:
            ctx.tx.edits.insert_after(group, after, _class(name))
        else:
            ctx.tx.edits.insert_before(group, ctx.module.body[0], _class(name, lead=False))
        ctx.needs_torch = True
        ctx.defined.add(name)
        self._name = name
        ctx.classes.moved.add(CANONICAL)
        ctx.tx.note(
            group,
            refs[0],
            self.code,
            f"apex.parallel.LARC -> class {name} defined in this file (torch has no LARC): "
            "the same algorithm and state dict",
            SAFE,
        )

    def settle(self, ctx: FileContext) -> None:
        """apex.amp that stays here (a held-back unit, a TODO) keeps LARC apex in the whole
        program: apex's `amp.initialize` takes apex's LARC and no other wrapper."""
        if not _amp_stays(ctx):
            return
        why = "apex.amp stays there, and its initialize takes apex's LARC only"
        ctx.classes.kept.setdefault(CANONICAL, why)
        ctx.classes.kept_in_run.setdefault(CANONICAL, why)
        group = getattr(self, "_group", None)
        if group is None or ctx.tx.dropped(group):
            return
        ctx.tx.edits.drop(group)
        ctx.defined.discard(self._name)
        ctx.classes.moved.discard(CANONICAL)
        for ref in self._refs:
            ctx.tx.todo(
                ref,
                self.code,
                "LARC stays apex: apex.amp stays in this file, and its initialize takes "
                "apex's LARC only; port both by hand",
            )

    @staticmethod
    def _refusal(ctx: FileContext, refs: list[cst.CSTNode], name: str) -> str | None:
        """Why LARC cannot become this file's class, or None."""
        kept = ctx.facts.kept_classes.get(CANONICAL)
        if kept is None and not _entry_script(ctx):
            kept = ctx.facts.kept_in_run.get(CANONICAL)
        if kept is not None:
            return f"apex's LARC stays where {kept}"
        for ref in refs:
            parent = ctx.index.parent(ref)
            if not (isinstance(parent, cst.Call) and parent.func is ref):
                use = parent
                while isinstance(use, (cst.Arg, cst.Element, cst.Tuple)):
                    use = ctx.index.parent(use)
                return (
                    f"`{ctx.index.code(use)}` uses the class other than by constructing it, "
                    "and a class defined here is not apex's (nor another file's)"
                )
        spelled = {id(n) for ref in refs for n in ctx.index.subtree(ref)}
        for node in ctx.index.within(ctx.module, cst.Name):
            if node.value != name or id(node) in spelled:
                continue
            parent = ctx.index.parent(node)
            if isinstance(parent, cst.Attribute) and parent.attr is node:
                continue  # `obj.LARC` is not the name
            if _in_larc_import(ctx, node):
                continue
            return f"the name `{name}` also stands for something else in this file"
        return None


def _amp_stays(ctx: FileContext) -> bool:
    """Some apex.amp reference is left as it was, or marked for a person."""
    handled = ctx.tx.handled()
    return any(
        (name == "apex.amp" or name.startswith("apex.amp."))
        and (
            (ref not in handled and not any(a in handled for a in ctx.index.ancestors(ref)))
            or ctx.tx.has_todo(ref)
        )
        for ref, name in ctx.names.refs()
    )


def _entry_script(ctx: FileContext) -> bool:
    """A script run as `__main__` that no module imports: its LARC objects reach other
    files only through the imports the plan links into its program."""
    main_guard = m.If(
        test=m.Comparison(
            left=m.Name("__name__"),
            comparisons=[m.ComparisonTarget(m.Equal(), m.SimpleString())],
        )
    )
    return not ctx.facts.imported and any(m.matches(s, main_guard) for s in ctx.module.body)


def _class_name(refs: list[cst.CSTNode]) -> str:
    """The name the file already calls LARC by, where it uses one name only."""
    names = {ref.value for ref in refs if isinstance(ref, cst.Name)}
    return names.pop() if len(names) == 1 else "LARC"


def _in_larc_import(ctx: FileContext, node: cst.Name) -> bool:
    """`node` is the name an import of apex's LARC binds."""
    imp = next(
        (a for a in ctx.index.ancestors(node) if isinstance(a, (cst.Import, cst.ImportFrom))),
        None,
    )
    if imp is None or isinstance(imp, cst.Import) or isinstance(imp.names, cst.ImportStar):
        return False
    module = ctx.index.code(imp.module) if imp.module is not None else ""
    return not imp.relative and any(
        f"{module}.{ctx.index.code(a.name)}" in SPELLINGS for a in imp.names
    )


def _preamble_end(module: cst.Module) -> cst.BaseStatement | None:
    """The last statement of the docstring and the imports (with their guards) that open
    the module: the class goes after it, before any module-level code runs."""
    last = None
    for i, stmt in enumerate(module.body):
        docstring = m.SimpleStatementLine(body=[m.Expr(m.SimpleString())])
        if not (
            (i == 0 and m.matches(stmt, docstring))
            or m.matches(stmt, IMPORT_LINE)
            or _import_guard(stmt)
        ):
            break
        last = stmt
    return last


def _import_guard(stmt: cst.BaseStatement) -> bool:
    """`try: import x except ImportError: ...` or `if cond: import x` at the top."""
    if not isinstance(stmt, (cst.Try, cst.If)):
        return False
    return isinstance(stmt.body, cst.IndentedBlock) and any(
        m.matches(s, IMPORT_LINE) for s in stmt.body.body
    )


def _class(name: str, lead: bool = True) -> cst.ClassDef:
    cls = cst.parse_statement(TEMPLATE.format(name=name).lstrip("\n"))
    return cls.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()] if lead else [])
