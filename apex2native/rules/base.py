"""What every rule is: a code, a safety tier, a summary, and a pass over one file."""

from __future__ import annotations

from typing import ClassVar

from apex2native.context import FileContext


class Rule:
    """One apex construct and its native rewrite.

    The class docstring is the rule's documentation (`apex2native rules CODE` prints it);
    `apply` records edits and findings on the file context, and never edits the tree itself.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    tier: ClassVar[str]
    summary: ClassVar[str]

    def apply(self, ctx: FileContext) -> None:
        raise NotImplementedError

    def finalize(self, ctx: FileContext) -> None:
        """Runs after every rule applied: for edits that depend on which sites survived."""

    def settle(self, ctx: FileContext) -> None:
        """Runs once the units are settled (the plan's blocks applied): for edits that
        depend on which units this file keeps apex."""
