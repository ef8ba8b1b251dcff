"""A2N110: the scaler reaches uses in other functions, classes and files, as the plan decided."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from apex2native.context import FileContext, Scaler
from apex2native.facts import Handed
from apex2native.findings import NUMERICS, SAFE
from apex2native.rules.base import Rule
from apex2native.syntax import with_appended


class ThreadScaler(Rule):
    """The GradScaler made where `amp.initialize` ran is handed to every function that uses it.

    Before (train.py, main.py):
        def train_one_epoch(config, model, data_loader, optimizer):
            ...
        train_one_epoch(config, model, loader, optimizer)
    After:
        def train_one_epoch(config, model, data_loader, optimizer, scaler):
            ...
        train_one_epoch(config, model, loader, optimizer, scaler=scaler)

    The repo-wide plan prefers a scaler in scope, then `self.scaler` inherited from a base
    class, then a parameter threaded along the call chain (every call site found is
    updated, in any file; a helper that initializes and returns `model, optimizer` returns
    the scaler too and its callers unpack it). A parameter that received an optimizer only
    to scale a loss (`attack(model, x, opt=None)`, `if opt is not None: amp.scale_loss(loss,
    opt)`) receives the scaler in its place; callers that passed none still take the plain
    arm. A loop shared by training and evaluation (`run_epoch(mode, ...)`, training only under
    `if mode == "train":`) takes `*, scaler=None` when the calls that no scaler reaches pass
    a literal `mode` that skips that arm: they pass nothing and run the forward in fp32.
    A closure handed on as a value (`Engine(train_update_function)`) reads the scaler of
    the def that makes it, so that def takes the parameter. A function its module lists in
    `__all__` is public API that callers outside the repository run too: it gains no
    required parameter. A use no scaler reaches is a blocker: its unit stays apex, with a
    TODO.
    """

    code = "A2N110"
    name = "thread-scaler"
    tier = SAFE
    summary = "pass the scaler to the functions and classes that use it"

    def apply(self, ctx: FileContext) -> None:
        facts = ctx.facts
        if not facts:
            return
        defs = ctx.index.definitions()
        for qualname, (name, spec) in facts.params.items():
            func = defs.get(qualname)
            if isinstance(func, cst.FunctionDef):
                scaler = Scaler.from_spec(name, func, spec)
                optional = qualname in facts.optional_scalers
                if optional:
                    # the calls that pass none are on paths no amp.initialize runs on
                    calls = f"calls of {qualname} that pass none"
                    self._optional(ctx, scaler, func, name, calls, always_follow=True)
                ctx.add_scaler(scaler)
                self._add_param(ctx, func, name, spec.unit, "None" if optional else None)
        for qualname, (param, new, spec) in facts.amp_params.items():
            func = defs.get(qualname)
            if isinstance(func, cst.FunctionDef):
                scaler = Scaler.from_spec(new, func, spec)
                if qualname in facts.optional_scalers:
                    self._optional(
                        ctx, scaler, func, param, f"calls of {qualname} that pass no `{param}`"
                    )
                ctx.add_scaler(scaler)
                self._rename_param(ctx, func, param, new, spec.unit)
        for qualname, (name, unit, default) in facts.flags.items():
            func = defs.get(qualname)
            if isinstance(func, cst.FunctionDef):
                self._add_param(ctx, func, name, unit, default)
        for qualname, (access, spec) in facts.unpacks.items():
            func = defs.get(qualname)
            if not isinstance(func, cst.FunctionDef):
                continue
            home = ctx.index.enclosing_class(func) if access.startswith("self.") else func
            if home is not None:
                ctx.add_scaler(Scaler.from_spec(access, home, spec))
        for qualname, (access, spec) in facts.inherited.items():
            cls = defs.get(qualname)
            if isinstance(cls, cst.ClassDef):
                ctx.add_scaler(Scaler.from_spec(access, cls, spec))
        for qualname, notes in facts.notes.items():
            node = defs.get(qualname, ctx.module)
            for unit, text in notes:
                group = object()
                ctx.tx.tag(group, unit)
                ctx.tx.note(
                    group,
                    node if node is not ctx.module else ctx.module.body[0],
                    self.code,
                    text,
                    SAFE,
                )
        self._calls(ctx)
        for qualname in facts.returns:
            func = defs.get(qualname)
            if isinstance(func, cst.FunctionDef):
                self._returns(ctx, func)

    def _optional(
        self,
        ctx: FileContext,
        scaler: Scaler,
        func: cst.FunctionDef,
        param: str,
        calls: str,
        always_follow: bool = False,
    ) -> None:
        """A scaler that is None for some calls: `param` stands for it in tests of whether
        one was given, and autocast runs only with one that is enabled. Where apex was
        initialized unconditionally autocast stays always on, unless `always_follow`."""
        scaler.optional = param
        if not scaler.autocast or not (scaler.autocast_enabled or always_follow):
            return
        name = scaler.access
        scaler.autocast_enabled = f"{name} is not None and {name}.is_enabled()"
        # the repository check's switch test: this region follows the scaler
        equivalents = ctx.unit_facts.equivalents.setdefault(scaler.unit, set())
        equivalents.add(scaler.autocast_enabled)
        group = object()
        ctx.tx.tag(group, scaler.unit)
        ctx.tx.note(
            group,
            func,
            self.code,
            f"{calls} get no scaler and run its forward in fp32 (under apex O1 they ran in "
            "mixed precision once amp.initialize had run in the process)",
            NUMERICS,
        )

    def _add_param(
        self,
        ctx: FileContext,
        func: cst.FunctionDef,
        name: str,
        unit: str,
        default: str | None = None,
    ) -> None:
        """Add a parameter every caller must pass: after the others, or keyword-only when
        they have defaults (a default would hide a call site the plan did not see)."""
        params = func.params
        taken = [
            p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)
        ]
        if name in taken:
            return
        group = object()

        def add(updated: cst.Parameters) -> cst.Parameters:
            new = cst.Param(cst.Name(name))
            if default is not None:
                new = new.with_changes(
                    default=cst.parse_expression(default),
                    equal=cst.AssignEqual(
                        whitespace_before=cst.SimpleWhitespace(""),
                        whitespace_after=cst.SimpleWhitespace(""),
                    ),
                )
            has_star = isinstance(updated.star_arg, (cst.Param, cst.ParamStar))
            if has_star or updated.kwonly_params:
                return updated.with_changes(kwonly_params=[*updated.kwonly_params, new])
            if any(p.default is not None for p in updated.params) or default is not None:
                return updated.with_changes(star_arg=cst.ParamStar(), kwonly_params=[new])
            return updated.with_changes(params=[*updated.params, new])

        ctx.tx.tag(group, unit)
        ctx.tx.edits.replace_node(group, params, add)
        ctx.tx.note(group, func, self.code, f"{ctx.index.qualname(func)} takes `{name}`", SAFE)

    def _rename_param(
        self, ctx: FileContext, func: cst.FunctionDef, param: str, new: str, unit: str
    ) -> None:
        """The parameter that received amp receives the scaler: named for what it holds."""
        group = object()
        ctx.tx.tag(group, unit)
        if new != param:
            for p in ctx.index.within(func.params, cst.Param):
                if p.name.value == param:
                    ctx.tx.edits.replace_node(group, p.name, lambda _u: cst.Name(new))
        for name in ctx.index.reads.get(param, []):
            if ctx.index.contains(func, name) and ctx.index.param_of(name) is func:
                if new != param:
                    ctx.tx.edits.replace_node(group, name, lambda _u: cst.Name(new))
                ctx.tx.handle(group, name)
        ctx.tx.note(group, func, self.code, f"`{param}` receives the scaler as `{new}`", SAFE)

    def _calls(self, ctx: FileContext) -> None:
        callees = ctx.facts.callees
        helpers = ctx.facts.helpers
        handed = ctx.facts.handed
        wanted = {raw.rsplit(".", 1)[-1] for raw in (*callees, *helpers, *handed)}
        calls = [c for name in sorted(wanted) for c in ctx.index.calls_named(name)]
        for node in sorted(calls, key=ctx.index.order):
            target = ctx.names.resolve_call(node)
            if target in callees and (target, self._caller(ctx, node)) not in ctx.facts.bare_calls:
                self._pass(ctx, node, *callees[target])
            if target in helpers:
                unit, access = helpers[target]
                # each caller unpacks into its own target (`scaler`, `self.grad_scaler`)
                caller = self._caller(ctx, node)
                if caller in ctx.facts.unpacks:
                    access = ctx.facts.unpacks[caller][0]
                self._unpack(ctx, node, unit, access)
            for entry in handed.get(target, ()):
                self._amp_argument(ctx, node, entry)

    @staticmethod
    def _caller(ctx: FileContext, node: cst.CSTNode) -> str:
        func = ctx.index.enclosing_function(node)
        return ctx.index.qualname(func) if func is not None else ctx.facts.module

    def _pass(self, ctx: FileContext, call: cst.Call, keyword: str, unit: str, value: str) -> None:
        """Add `keyword=<the scaler>` (or the given value) to a call site."""
        if any(a.keyword is not None and a.keyword.value == keyword for a in call.args):
            return
        group = object()
        ctx.tx.tag(group, unit)
        reachable = [s for s in ctx.reach.reachable(call) if s.unit == unit]
        if not reachable:
            ctx.tx.fail(
                group, call, self.code, f"no scaler reaches this call; pass `{keyword}=` by hand"
            )
            return
        access = value or reachable[0].access

        def add(updated: cst.Call) -> cst.Call:
            arg = cst.Arg(
                value=cst.parse_expression(access),
                keyword=cst.Name(keyword),
                equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace("")),
            )
            return updated.with_changes(args=with_appended(updated.args, arg))

        ctx.tx.edits.replace_node(group, call, add)
        stmt = ctx.index.statement_of(call)
        width = ctx.index.indent_width(stmt)
        ctx.tx.edits.replace_statement(group, stmt, lambda u: [ctx.gen.relayout(u, width)])

    def _amp_argument(self, ctx: FileContext, call: cst.Call, handed: Handed) -> None:
        """Pass the scaler where amp was passed (or the optimizer `handed.replaces` names,
        which only scaled the loss); a keyword follows the parameter's new name."""
        arg, param, new, unit, replace = handed
        args = list(call.args)
        index = int(arg) if arg.isdigit() else None
        found = [
            a
            for i, a in enumerate(args)
            if (a.keyword is None and i == index)
            or (a.keyword is not None and a.keyword.value == arg)
        ]
        if not found:
            return
        target = found[0]
        group = object()
        ctx.tx.tag(group, unit)
        value = target.value
        if replace and not m.matches(value, m.Name(replace)):
            if not m.matches(value, m.Name()):  # a name here is the scaler, passed already
                ctx.tx.fail(
                    group,
                    call,
                    self.code,
                    f"this call passes `{ctx.index.code(value)}` where the plan expected the "
                    f"optimizer `{replace}`, whose parameter now takes the scaler; pass the "
                    "scaler by hand",
                )
            return
        if replace or ctx.names.apex_name(value) == "apex.amp":
            reachable = [s for s in ctx.reach.reachable(call) if s.unit == unit]
            if not reachable:
                ctx.tx.fail(
                    group, call, self.code, f"no scaler reaches this call to pass as `{new}`"
                )
                return
            access = reachable[0].access
            ctx.tx.edits.replace_node(group, value, lambda _u: cst.parse_expression(access))
            ctx.tx.handle(group, value)
        if target.keyword is not None and new != param:
            ctx.tx.edits.replace_node(group, target.keyword, lambda _u: cst.Name(new))

    def _unpack(self, ctx: FileContext, call: cst.Call, unit: str, access: str) -> None:
        parent = ctx.index.parent(call)
        if not (isinstance(parent, cst.Assign) and len(parent.targets) == 1):
            return
        target = parent.targets[0].target
        if not isinstance(target, (cst.Tuple, cst.List)):
            return
        if any(ctx.index.code(e.value) == access for e in target.elements):
            return
        group = object()
        ctx.tx.tag(group, unit)

        def add(updated):
            element = cst.Element(cst.parse_expression(access))
            return updated.with_changes(elements=with_appended(updated.elements, element))

        ctx.tx.edits.replace_node(group, target, add)

    def _returns(self, ctx: FileContext, func: cst.FunctionDef) -> None:
        own = [s for s in ctx.reach.scalers if s.home is func]
        if not own:
            return
        access = own[0].access
        for node in ctx.index.within(func.body, cst.Return):
            if isinstance(node.value, cst.Tuple):
                if ctx.index.enclosing_function(node) is not func:
                    continue
                if any(ctx.index.code(e.value) == access for e in node.value.elements):
                    continue
                group = object()
                ctx.depend(own[0], group)

                def add(updated: cst.Tuple) -> cst.Tuple:
                    new = cst.Element(cst.parse_expression(access))
                    return updated.with_changes(elements=with_appended(updated.elements, new))

                ctx.tx.edits.replace_node(group, node.value, add)
