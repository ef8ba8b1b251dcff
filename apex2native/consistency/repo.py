"""The rewritten repository as the checks see it: texts, trees, summaries, programs."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cached_property

from apex2native.findings import FileOutcome
from apex2native.summary import Summary
from apex2native.textio import read_text


@dataclass(frozen=True)
class Violation:
    """A unit the check holds back; `path`/`line`: where its TODO marker goes (if in a file)."""

    unit: str
    code: str
    message: str
    path: str | None = None
    line: int = 0
    culprit: str | None = None  # the file whose change breaks things, when no unit does

    def reason(self, where: str) -> str:
        """Why the unit stays apex, for the marker at its initialize (no line: it moves)."""
        return f"its unit is held back by {where} (A2N100 {self.message})"


class RepoView:
    def __init__(self, plan, outcomes: dict[str, FileOutcome], blocked: dict[str, str]) -> None:
        self.plan = plan
        self.graph = plan.graph
        self.outcomes = outcomes
        self.blocked = blocked
        self._trees: dict[str, ast.Module | None] = {}
        self._new: dict[str, Summary | None] = {}

    @cached_property
    def changed(self) -> set[str]:
        return {p for p, o in self.outcomes.items() if o.status == "changed" and o.new_text}

    def new_text(self, path: str) -> str | None:
        outcome = self.outcomes.get(path)
        if outcome is not None and outcome.status == "changed":
            return outcome.new_text
        if outcome is not None and outcome.old_text is not None:
            return outcome.old_text
        try:
            return read_text(path)
        except OSError:
            return None

    def new_tree(self, path: str) -> ast.Module | None:
        if path not in self._trees:
            text = self.new_text(path)
            key = ("tree", path, text or "")
            if text is not None and key not in self.plan.rewritten:
                try:
                    self.plan.rewritten[key] = ast.parse(text)
                except (SyntaxError, ValueError, RecursionError):
                    self.plan.rewritten[key] = None
            self._trees[path] = self.plan.rewritten[key] if text is not None else None
        return self._trees[path]

    def old_summary(self, path: str) -> Summary | None:
        return self.plan.summaries.get(path)

    def new_summary(self, path: str) -> Summary | None:
        """The summary of a file as rewritten (the old one when it did not change)."""
        if path not in self.changed:
            return self.old_summary(path)
        if path not in self._new:
            self._new[path] = self.plan.summary_of(path, self.new_text(path) or "")
        return self._new[path]

    def display(self, path: str) -> str:
        outcome = self.outcomes.get(path)
        return outcome.path if outcome is not None else path

    def old_line(self, path: str, qualname: str) -> int:
        """Where a function (or the module, for "") starts in the original text."""
        summary = self.old_summary(path)
        func = summary.functions.get(qualname) if summary else None
        return func.line if func is not None else 1

    def units_in(self, path: str) -> set[str]:
        outcome = self.outcomes.get(path)
        return set(outcome.units) if outcome is not None else set()

    @cached_property
    def closures(self) -> dict[str, set[str]]:
        """Each summarised file and every project file it imports, transitively."""
        imports = {p: self.graph.imported_files(s) for p, s in (self.plan.summaries or {}).items()}
        out: dict[str, set[str]] = {}
        for start in imports:
            seen = {start}
            stack = [start]
            while stack:
                for nxt in imports.get(stack.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            out[start] = seen
        return out

    def same_program(self, a: str, b: str) -> bool:
        """Some file's import closure holds both (one program may run both)."""
        if a == b:
            return True
        return any(a in c and b in c for c in self.closures.values())
