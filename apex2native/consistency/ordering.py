"""On every path: the backward, then `unscale_`, then gradient reads; one `unscale_` per step.

A flow walk over each rewritten function that uses a scaler (loops are taken to run at
least once). The state of each scaler's
gradients is one of: idle (nothing since the last step), scaled (`scaler.scale(...)`'s
backward ran), plain (a plain backward ran: the arm where the scaler is off), unscaled
(`unscale_` ran). Branches join, loops run twice. Violations: `unscale_` where no backward
can have run yet, a second `unscale_` before `update()`, a scaled backward after `unscale_`
(its gradients would never be unscaled), and a clip that can see scaled gradients.
"""

from __future__ import annotations

import ast

from apex2native.consistency.repo import RepoView, Violation
from apex2native.summary import GRAD_CLIPS

CODE = "A2N100"
IDLE, SCALED, UNSCALED, PLAIN = "idle", "scaled", "unscaled", "plain"
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def check_ordering(view: RepoView) -> list[Violation]:
    found: list[Violation] = []
    for path in sorted(view.changed):
        accesses = view.outcomes[path].unit_facts.accesses
        tree = view.new_tree(path)
        if not accesses or tree is None:
            continue
        for scope, qualname in _scopes(tree, view.graph.name_of(path)[0]):
            for access, units in accesses.items():
                live = sorted(units - set(view.blocked))
                if not live:
                    continue
                problem = _Flow(access).check(scope)
                if problem:
                    # which of the units so named this scope uses is not recorded: all go
                    message = f"in {qualname or 'the module'}: {problem}"
                    line = view.old_line(path, qualname)
                    found.extend(Violation(unit, CODE, message, path, line) for unit in live)
    return found


def _scopes(tree: ast.Module, module: str):
    """The module body and every function body, with the function's qualified name."""
    yield tree.body, ""
    stack: list[tuple[ast.AST, list[str]]] = [(tree, [])]
    while stack:
        node, names = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                path = [*names, child.name]
                if not isinstance(child, ast.ClassDef):
                    yield child.body, ".".join(p for p in (module, *path) if p)
                stack.append((child, path))
            else:
                stack.append((child, names))


class _Flow:
    def __init__(self, access: str) -> None:
        self.access = access
        self.problem: str | None = None
        self._loops: list[set[str]] = []  # states that jump back to each enclosing loop

    def check(self, body: list[ast.stmt]) -> str | None:
        nodes = [n for s in body for n in _scope_nodes(s)]
        self.scaled_names = {
            t.id
            for n in nodes
            if isinstance(n, ast.Assign) and self._is_scale(n.value)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        events = [self._event(n) for n in nodes]
        kinds = {e[0] for e in events if e}
        if not kinds & {"unscale", "backward"}:
            return None  # neither a scaled backward nor an unscale_: nothing to order
        start = IDLE if kinds & {"backward", "plain"} else SCALED
        self.run(body, {(start, frozenset())})
        return self.problem

    def _events_deep(self, stmt: ast.AST):
        for node in _own_nodes(stmt):
            event = self._event(node)
            if event:
                yield event

    def _event(self, node: ast.AST) -> tuple[str, str] | None:
        """(kind, the call as written) for the calls the flow cares about."""
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            name = getattr(node.func, "id", None) if isinstance(node, ast.Call) else None
            return ("read", f"{name}(...)") if name in GRAD_CLIPS else None
        attr = node.func.attr
        receiver = ast.unparse(node.func.value)
        if attr == "backward":
            value = node.func.value
            scaled = self._is_scale(value) or (
                isinstance(value, ast.Name) and value.id in self.scaled_names
            )
            return ("backward" if scaled else "plain", f"{receiver}.backward()")
        if receiver == self.access and attr in ("unscale_", "step", "update"):
            return (attr.rstrip("_"), ast.unparse(node))
        if attr in GRAD_CLIPS:
            return ("read", f"{attr}(...)")
        return None

    def _is_scale(self, node: ast.AST) -> bool:
        """`<scaler>.scale(loss)`."""
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "scale"
            and ast.unparse(node.func.value) == self.access
        )

    def run(self, body: list[ast.stmt], state: set) -> set:
        for stmt in body:
            if not state:
                return state
            state = self.stmt(stmt, state)
        return state

    def stmt(self, stmt: ast.stmt, state: set) -> set:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return state
        if isinstance(stmt, ast.If):
            return self.branch(stmt, self.simple(stmt.test, state))
        if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
            head = self.simple(stmt.iter if not isinstance(stmt, ast.While) else stmt.test, state)
            head = {(grads, frozenset()) for grads, _ in head}  # each pass re-tests its `if`s
            total: set = set()
            entry = set(head)
            for _ in range(2):  # loops run at least once: training loops are not empty
                self._loops.append(set())
                after = self.run(stmt.body, set(entry)) | self._loops.pop()
                after = {(grads, frozenset()) for grads, _ in after}
                total |= after
                entry = head | after
            return self.run(stmt.orelse, set(total)) if stmt.orelse else total
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                state = self.simple(item.context_expr, state)
            return self.run(stmt.body, state)
        if isinstance(stmt, ast.Try):
            after_body = self.run(stmt.body, set(state))
            out = set(after_body)
            for handler in stmt.handlers:
                out |= self.run(handler.body, state | after_body)
            out = self.run(stmt.orelse, out) if stmt.orelse else out
            return self.run(stmt.finalbody, out) if stmt.finalbody else out
        if isinstance(stmt, (ast.Return, ast.Raise)):
            self.simple(stmt, state)
            return set()
        if isinstance(stmt, (ast.Continue, ast.Break)):
            if self._loops:
                self._loops[-1].update(state)
            return set()
        return self.simple(stmt, state)

    def branch(self, stmt: ast.If, state: set) -> set:
        """Both arms, except where an earlier `if` on the same test already decided it."""
        test, negated = _test_of(stmt.test)
        out: set = set()
        for grads, known in state:
            taken = dict(known).get(test)
            if taken is None or taken != negated:
                fact = frozenset({*known, (test, not negated)})
                out |= self.run(stmt.body, {(grads, fact)})
            if taken is None or taken == negated:
                fact = frozenset({*known, (test, negated)})
                out |= self.run(stmt.orelse, {(grads, fact)})
        return out

    def simple(self, node: ast.AST, state: set) -> set:
        for kind, call in self._events_deep(node):
            state = {
                (after, known)
                for grads, known in state
                for after in self.apply(kind, call, {grads})
            }
        return state

    def apply(self, kind: str, call: str, state: set[str]) -> set[str]:
        if kind == "backward":
            if UNSCALED in state and self.problem is None:
                self.problem = (
                    f"`{call}` can run after {self.access}.unscale_ and before the step: "
                    "its gradients would stay scaled"
                )
            return {UNSCALED if s == UNSCALED else SCALED for s in state}
        if kind == "plain":
            return {UNSCALED if s == UNSCALED else PLAIN for s in state}
        if kind == "unscale":
            if IDLE in state and self.problem is None:
                self.problem = f"`{call}` can run before any backward"
            if UNSCALED in state and self.problem is None:
                self.problem = f"`{call}` can run twice before update()"
            return {UNSCALED}
        if kind == "read":
            if SCALED in state and self.problem is None:
                self.problem = f"`{call}` can read gradients before {self.access}.unscale_"
            return state
        if kind in ("step", "update"):
            return {IDLE}
        return state


def _test_of(test: ast.AST) -> tuple[str, bool]:
    """An `if` test as written without a leading `not`, and whether it had one."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return ast.unparse(test.operand), True
    return ast.unparse(test), False


def _scope_nodes(node: ast.AST):
    """Every node of a statement, nested blocks included, but not nested defs."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(c for c in ast.iter_child_nodes(current) if not isinstance(c, SCOPES))


def _own_nodes(node: ast.AST):
    """The nodes of a statement or expression, not those of nested defs or blocks."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for child in ast.iter_child_nodes(current):
            if isinstance(child, (*SCOPES, ast.stmt)) and child is not node:
                continue
            stack.append(child)
