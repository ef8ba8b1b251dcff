"""Apex functions whose module already has a native twin (`step_apex` beside `step_amp`).

A library that offers apex as one backend among others often keeps one factory per backend:
`supervised_training_step_apex(model, optimizer, ...)` next to
`supervised_training_step_amp(model, optimizer, ..., scaler, ...)`. The apex one is public
API, so its callers cannot be given a scaler; the right migration routes it to the native
code that already exists (issue 9) instead of writing a second native implementation.

Routing is only sound when the two do the same training apart from the AMP mechanics, so the
twin is proven, not guessed from the name: with apex's `scale_loss` block read as a plain
`loss.backward()`, and the native twin's autocast blocks dissolved and its `if <scaler>:`
test taking the unscaled arm, the two bodies must be the same code. Read with `ast`, so the
repository summary and the rule decide alike.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Mapping, Sized
from dataclasses import dataclass

APEX_NAMES = ("amp", "apex_amp", "apex")  # names apex is read through, left after the block
NATIVE_WORDS = ("amp", "native", "native_amp", "torch", "torch_amp", "cuda_amp")


@dataclass(frozen=True)
class Twin:
    """`apex` delegates to `native`, passing its own parameters and a new GradScaler as
    `scaler` (the one parameter the native twin has in addition)."""

    apex: str
    native: str
    scaler: str
    keywords: tuple[str, ...]  # the apex def's parameters, passed on by name
    positional: tuple[str, ...]  # its positional-only ones, passed on by position
    line: int = 0  # of the apex def


def native_twins(tree: ast.Module, bindings: Mapping[str, Sized]) -> dict[str, Twin]:
    """Module-level apex defs of `tree` that a native twin proves, by name. `bindings`: how
    the module binds each name (a twin bound twice may not be the def compared)."""
    defs = {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    found = {}
    for name, func in defs.items():
        if "apex" not in name.lower() or not isinstance(func, ast.FunctionDef):
            continue
        for word in NATIVE_WORDS:
            other = defs.get(_replace_apex(name, word))
            if not isinstance(other, ast.FunctionDef) or other.decorator_list:
                continue  # a decorator may change what the twin does
            if len(bindings.get(other.name, ())) != 1 or "torch" in (_params(func) or ["torch"]):
                continue  # rebound later (what runs is not what was compared), or shadowed
            twin = _twin(func, other)
            if twin is not None:
                found[name] = twin
                break
    return found


def _replace_apex(name: str, word: str) -> str:
    at = name.lower().index("apex")
    return name[:at] + word + name[at + 4 :]


def _params(func: ast.FunctionDef) -> list[str] | None:
    args = func.args
    if args.vararg or args.kwarg:
        return None
    return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]


def _twin(apex: ast.FunctionDef, native: ast.FunctionDef) -> Twin | None:
    mine, theirs = _params(apex), _params(native)
    if mine is None or theirs is None or "apex" in native.name.lower():
        return None
    extra = [p for p in theirs if p not in mine]
    if len(extra) != 1 or "scaler" not in extra[0] or [p for p in theirs if p in mine] != mine:
        return None
    scaler = extra[0]
    mine_body = _body(apex, None)
    if mine_body is None or not _factory(apex) or not _scales_with(native, scaler):
        return None
    if mine_body != _body(native, scaler):
        return None
    posonly = tuple(a.arg for a in apex.args.posonlyargs)
    if posonly != tuple(a.arg for a in native.args.posonlyargs):
        return None
    keywords = tuple(p for p in mine if p not in posonly)
    return Twin(apex.name, native.name, scaler, keywords, posonly, apex.lineno)


def _factory(func: ast.FunctionDef) -> bool:
    """The def makes the closure that scales and returns it: it runs once per training, so
    the GradScaler it hands the twin lives as long as the training does."""
    closures = {s.name: s for s in func.body if isinstance(s, ast.FunctionDef)}
    last = func.body[-1] if func.body else None
    if not (isinstance(last, ast.Return) and isinstance(last.value, ast.Name)):
        return False
    closure = closures.get(last.value.id)
    scaling = [n for n in ast.walk(func) if isinstance(n, ast.Attribute) and n.attr == "scale_loss"]
    inside = {id(n) for n in ast.walk(closure)} if closure is not None else set()
    return bool(scaling) and all(id(n) in inside for n in scaling)


def _scales_with(func: ast.FunctionDef, scaler: str) -> bool:
    """`<scaler>.scale(...)` runs somewhere in `func`: the parameter is a GradScaler."""
    return any(_scaler_method(n, scaler) == "scale" for n in ast.walk(func))


def _body(func: ast.FunctionDef, scaler: str | None) -> str | None:
    """The def's body with the AMP mechanics taken out, as comparable text; None when apex
    is used in a way other than a `scale_loss` block."""
    body = [s for s in func.body if not _docstring(s, func) and not _imports_only(s)]
    normal = _Normalize(scaler)
    out = [normal.visit(copy.deepcopy(s)) for s in body]
    module = ast.Module(body=_flatten(out), type_ignores=[])
    if scaler is not None and _reads_gradients(func.body):
        return None  # a clip beside a scaler needs an unscale_ this comparison does not prove
    if normal.failed or any(
        isinstance(n, ast.Name) and n.id.lower() in APEX_NAMES for n in ast.walk(module)
    ):
        return None  # apex is used some other way (`amp.master_params(opt)`)
    return ast.dump(module)


def _docstring(stmt: ast.stmt, func: ast.FunctionDef) -> bool:
    return (
        stmt is func.body[0]
        and isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _amp_import(stmt: ast.stmt) -> bool:
    """`from apex import amp`, `from torch.cuda.amp import autocast`: a backend's own."""
    if isinstance(stmt, ast.ImportFrom):
        names = [stmt.module or ""]
    elif isinstance(stmt, ast.Import):
        names = [a.name for a in stmt.names]
    else:
        return False
    return all(n == "apex" or n.startswith(("apex.", "torch.cuda.amp", "torch.amp")) for n in names)


def _imports_only(stmt: ast.stmt) -> bool:
    """`try: from apex import amp` / `from torch.cuda.amp import autocast` and its handler:
    each backend's own availability check, which the other does not need."""
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return _amp_import(stmt)
    return (
        isinstance(stmt, ast.Try)
        and all(_amp_import(s) for s in stmt.body)
        and not stmt.orelse
        and not stmt.finalbody
        and all(all(isinstance(s, (ast.Raise, ast.Pass)) for s in h.body) for h in stmt.handlers)
    )


def _flatten(stmts: list) -> list:
    out = []
    for s in stmts:
        out.extend(s if isinstance(s, list) else [s])
    return out


class _Normalize(ast.NodeTransformer):
    """apex's `with amp.scale_loss(loss, opt) as s: s.backward()` -> `loss.backward()`;
    the native twin's `with autocast(...):` -> its body, `if <scaler>: A else: B` -> B."""

    def __init__(self, scaler: str | None) -> None:
        self.scaler = scaler
        self.failed = False

    def generic_visit(self, node):
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            value = getattr(node, field, None)
            if isinstance(value, list):
                setattr(node, field, _flatten(value))
        return node

    def visit_With(self, node: ast.With):
        self.generic_visit(node)
        if len(node.items) != 1 or not isinstance(node.items[0].context_expr, ast.Call):
            return node
        call = node.items[0].context_expr
        name = call.func.attr if isinstance(call.func, ast.Attribute) else None
        name = name or (call.func.id if isinstance(call.func, ast.Name) else None)
        if self.scaler is not None and name == "autocast":
            if not _fp16_on_cuda(call):
                self.failed = True  # bf16, a switch, the CPU: not what apex ran
            return node.body
        if self.scaler is None and name == "scale_loss":
            if len(call.args) != 2 or call.keywords:  # loss_id, delay_unscale: not one scaler
                self.failed = True
                return node
            alias = node.items[0].optional_vars
            if (
                isinstance(alias, ast.Name)
                and len(node.body) == 1
                and _is_backward_of(node.body[0], alias.id)
            ):
                backward = copy.deepcopy(node.body[0])
                backward.value.func.value = copy.deepcopy(call.args[0])
                return backward
            self.failed = True
        return node

    def visit_If(self, node: ast.If):
        self.generic_visit(node)
        if self.scaler is not None and _tests_name(node.test, self.scaler):
            scaled = _unscaled(node.body, self.scaler)
            plain = ast.dump(ast.Module(body=node.orelse, type_ignores=[]))
            if scaled is None or scaled != plain or _reads_gradients(node.orelse):
                self.failed = True  # the scaled arm is not the plain one under a scaler
            return node.orelse
        return node


def _unscaled(body: list[ast.stmt], scaler: str) -> str | None:
    """The scaled arm read without its scaler, as comparable text; None when the scaler is
    used another way (a missing update, a scaled value kept, an unscale)."""
    stmts = _without_scaler(body, scaler)
    return None if stmts is None else ast.dump(ast.Module(body=stmts, type_ignores=[]))


def _without_scaler(body: list[ast.stmt], scaler: str) -> list[ast.stmt] | None:
    """`scaler.scale(x).backward()` -> `x.backward()`; `scaler.step(o)` followed by
    `scaler.update()` -> `o.step()`; an `if` that does not test the scaler, arm by arm."""
    out: list[ast.stmt] = []
    i = 0
    while i < len(body):
        stmt = body[i]
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if _backward(call) and _scaler_method(call.func.value, scaler) == "scale":
            scale = call.func.value
            if len(scale.args) != 1 or scale.keywords:
                return None
            out.append(
                ast.Expr(ast.Call(ast.Attribute(scale.args[0], "backward", ast.Load()), [], []))
            )
        elif _scaler_method(call, scaler) == "step" and len(call.args) == 1 and not call.keywords:
            following = body[i + 1] if i + 1 < len(body) else None
            update = following.value if isinstance(following, ast.Expr) else None
            if _scaler_method(update, scaler) != "update" or update.args or update.keywords:
                return None
            out.append(ast.Expr(ast.Call(ast.Attribute(call.args[0], "step", ast.Load()), [], [])))
            i += 1
        elif any(isinstance(n, ast.Name) and n.id == scaler for n in ast.walk(stmt)):
            if not isinstance(stmt, ast.If) or _tests_name(stmt.test, scaler):
                return None
            inner = _without_scaler(stmt.body, scaler)
            rest = _without_scaler(stmt.orelse, scaler)
            if inner is None or rest is None:
                return None
            out.append(ast.If(stmt.test, inner, rest))
        else:
            out.append(stmt)
        i += 1
    return out


def _backward(call: ast.AST | None) -> bool:
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "backward"
        and not call.args
        and not call.keywords
    )


def _scaler_method(call: ast.AST | None, scaler: str) -> str | None:
    """`<scaler>.<method>(...)` -> method."""
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute):
        return call.func.attr if _is_name(call.func.value, scaler) else None
    return None


def _reads_gradients(body: list[ast.stmt]) -> bool:
    """A clip or any `.grad` read: under a scaler it needs an `unscale_` first, which this
    comparison does not prove."""
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.Attribute) and node.attr == "grad":
            return True
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if "clip" in name.lower() or "unscale" in name.lower():
                return True
    return False


def _fp16_on_cuda(call: ast.Call) -> bool:
    """`autocast()`, `autocast("cuda")`, `autocast(enabled=True, dtype=torch.float16)`."""
    if any(not (isinstance(a, ast.Constant) and a.value == "cuda") for a in call.args):
        return False
    for keyword in call.keywords:
        value = keyword.value
        if keyword.arg == "enabled" and isinstance(value, ast.Constant) and value.value is True:
            continue
        if keyword.arg == "device_type" and isinstance(value, ast.Constant):
            if value.value == "cuda":
                continue
        if keyword.arg == "dtype" and ast.unparse(value) in ("torch.float16", "torch.half"):
            continue
        return False
    return True


def _is_backward_of(stmt: ast.stmt, name: str) -> bool:
    """`<name>.backward()`."""
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    return _backward(call) and _is_name(call.func.value, name)  # type: ignore[union-attr]


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _tests_name(test: ast.expr, name: str) -> bool:
    """`if scaler:` / `if scaler is not None:`."""
    if isinstance(test, ast.Name):
        return test.id == name
    return (
        isinstance(test, ast.Compare)
        and _is_name(test.left, name)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.IsNot)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value is None
    )
