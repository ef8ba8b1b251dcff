"""A2N205: apex's LARC wrapper, which torch lacks, becomes a class of the file that uses it."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.apex_imports import bound_name
from apex2native.context import FileContext
from apex2native.findings import SAFE
from apex2native.rules.base import Rule
from apex2native.syntax import MAIN_GUARD

# the class lives in the module `apex.parallel.LARC`, which the package never re-exports:
# `apex.parallel.LARC` is the module
CLASS = "apex.parallel.LARC.LARC"
MODULE = "apex.parallel.LARC"
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
        handled = ctx.tx.handled()
        refs = [ref for ref, name in ctx.names.refs() if name == CLASS and ref not in handled]
        through = [ref for ref in refs if _through_project(ctx, ref)]
        if through and CANONICAL not in ctx.facts.kept_classes:
            group = object()  # the module they import it from defines it (or keeps apex's)
            for ref in through:
                ctx.tx.handle(group, ref)
        refs = [ref for ref in refs if ref not in through]
        exported = _exported(ctx)
        if not refs and not exported:
            return
        names = sorted({ref.value for ref in refs if isinstance(ref, cst.Name)} | exported)
        name = names[0] if names else "LARC"  # the name the file already calls it by
        if len(names) > 1:
            why: str | None = "it is imported under several names here"
        else:
            why = self._refusal(ctx, refs, name)
        if why is not None:
            ctx.classes.kept.setdefault(CANONICAL, why)
            ctx.classes.kept_in_run.setdefault(CANONICAL, why)
            for node in refs or _larc_imports(ctx):
                ctx.tx.todo(node, self.code, f"LARC stays apex: {why}; port it by hand")
            return
        group = self._group = object()
        self._refs = refs
        for ref in refs:
            if not isinstance(ref, cst.Name):
                ctx.tx.edits.replace_node(group, ref, lambda _u, n=name: cst.Name(n))
            ctx.tx.handle(group, ref)
        cls = _class(name, ctx.module.default_newline)
        after = _preamble_end(ctx, name)
        if after is not None:
            ctx.tx.edits.insert_after(group, after, cls)
        else:
            ctx.tx.edits.insert_before(
                group, ctx.module.body[0], cls.with_changes(leading_lines=[])
            )
        ctx.needs_torch = True
        ctx.defined.add(name)
        self._name = name
        ctx.classes.moved.add(CANONICAL)
        ctx.tx.note(
            group,
            refs[0] if refs else _larc_imports(ctx)[0],
            self.code,
            f"apex.parallel.LARC -> class {name} defined in this file (torch has no LARC): "
            "the same algorithm and state dict",
            SAFE,
        )

    def settle(self, ctx: FileContext) -> None:
        """apex.amp that stays here (a held-back unit, a TODO) keeps LARC apex in the whole
        program: apex's `amp.initialize` takes apex's LARC and no other wrapper."""
        if not ctx.apex_remains("apex.amp"):
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
                return (
                    f"{_use(ctx, ref)} uses the class other than by constructing it, and a "
                    "class defined here is not apex's (nor another file's)"
                )
        spelled = {id(n) for ref in refs for n in ctx.index.subtree(ref)}
        imports = [imp for imp, bound in _larc_aliases(ctx, (CLASS, MODULE)) if bound == name]
        for node in ctx.index.within(ctx.module, cst.Name):
            if node.value != name or id(node) in spelled:
                continue
            parent = ctx.index.parent(node)
            if isinstance(parent, cst.Attribute) and parent.attr is node:
                continue  # `obj.LARC` is not the name
            if any(ctx.index.contains(imp, node) for imp in imports):
                continue  # the import of apex's LARC (or of its module) that binds it
            return f"the name `{name}` also stands for something else in this file"
        return None


def _use(ctx: FileContext, ref: cst.CSTNode) -> str:
    """How a TODO names a use of the class: its kind, or its statement's first line."""
    for node in ctx.index.ancestors(ref):
        if isinstance(node, cst.Annotation):
            return "an annotation"
        if isinstance(node, cst.Arg) and isinstance(ctx.index.parent(node), cst.ClassDef):
            return "a base class"
        if isinstance(node, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
            break
    code = ctx.index.code(ctx.index.statement_of(ref))
    line = next(
        (t.strip() for t in code.splitlines() if t.strip() and not t.strip().startswith("#")), ""
    )
    return f"`{line[:60]}{'...' if len(line) > 60 else ''}`"


def _through_project(ctx: FileContext, ref: cst.CSTNode) -> bool:
    """`from pkg import LARC` where pkg re-exports apex's: pkg's own rewrite decides which
    class that is, and this file keeps reading it from there."""
    root = ref
    while isinstance(root, cst.Attribute):
        root = root.value
    if not isinstance(root, cst.Name):
        return False
    imports = [b for b in ctx.index.bindings(root) if b.kind == "import"]
    return bool(imports) and not any((b.qualified or "").split(".")[0] == "apex" for b in imports)


def _entry_script(ctx: FileContext) -> bool:
    """A script run as `__main__` that no module imports: its LARC objects reach other
    files only through the imports the plan links into its program."""
    dynamic = ctx.index.calls_named("import_module") or ctx.index.calls_named("__import__")
    return (
        not ctx.facts.imported
        and not dynamic
        and any(m.matches(s, MAIN_GUARD) for s in ctx.module.body)
    )


def _larc_aliases(ctx: FileContext, spellings=(CLASS,)) -> list[tuple[cst.ImportFrom, str]]:
    """`from apex.parallel.LARC import LARC [as L]` (or, with MODULE among `spellings`,
    `from apex.parallel import LARC`): each import and the name it binds."""
    out = []
    for imp in ctx.index.within(ctx.module, cst.ImportFrom):
        if imp.relative or imp.module is None or isinstance(imp.names, cst.ImportStar):
            continue
        module = ctx.index.code(imp.module)
        for alias in imp.names:
            if f"{module}.{ctx.index.code(alias.name)}" in spellings:
                out.append((imp, bound_name(alias)))
    return out


def _larc_imports(ctx: FileContext) -> list[cst.ImportFrom]:
    """The module's `from apex.parallel.LARC import LARC` statements."""
    return list(dict.fromkeys(imp for imp, _ in _larc_aliases(ctx)))


def _exported(ctx: FileContext) -> set[str]:
    """Names this module binds to apex's LARC that other modules import from it."""
    return {name for _, name in _larc_aliases(ctx) if name in ctx.facts.exports}


def _preamble_end(ctx: FileContext, name: str) -> cst.BaseStatement | None:
    """The last statement of the docstring and the imports (with guards around imports that
    do not read `name`) that open the module: the class goes after it, before any
    module-level code runs."""
    last = None
    docstring = m.SimpleStatementLine(body=[m.Expr(m.SimpleString())])
    for i, stmt in enumerate(ctx.module.body):
        if not (
            (i == 0 and m.matches(stmt, docstring))
            or m.matches(stmt, IMPORT_LINE)
            or _import_guard(ctx, stmt, name)
        ):
            break
        last = stmt
    return last


def _import_guard(ctx: FileContext, stmt: cst.BaseStatement, name: str) -> bool:
    """`try: import x except ImportError: ...` or `if cond: import x` at the top, which
    does not read `name` outside its imports (a guard that builds the optimizer would run
    before the class)."""
    if not isinstance(stmt, (cst.Try, cst.If)):
        return False
    if not (
        isinstance(stmt.body, cst.IndentedBlock)
        and any(m.matches(s, IMPORT_LINE) for s in stmt.body.body)
    ):
        return False
    return not any(
        node.value == name
        and not any(isinstance(a, (cst.Import, cst.ImportFrom)) for a in ctx.index.ancestors(node))
        for node in ctx.index.within(stmt, cst.Name)
    )


def _class(name: str, newline: str) -> cst.ClassDef:
    text = TEMPLATE.format(name=name).lstrip("\n").replace("\n", newline)
    cls = cst.parse_statement(text, config=cst.PartialParserConfig(default_newline=newline))
    return cls.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()])
