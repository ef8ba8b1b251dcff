"""New code in the file's own style: its quote character, and black layout for long lines."""

from __future__ import annotations

import io
import re
import tokenize
from functools import lru_cache

import libcst as cst

from apex2native.target import AMP_AUTOCAST, DEVICE_GRAD_SCALER, TorchVersion, allows

DEFAULT_LINE_LENGTH = 88


@lru_cache(maxsize=64)
def detect_quote(text: str) -> str:
    """The quote character most string literals of the file use (double on a tie).

    Cached: the hold-back rounds and phase 1 ask again about the same text, and
    tokenizing is a large share of a small rewrite.
    """
    single = double = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.STRING:
                body = re.sub(r"^[A-Za-z]*", "", tok.string)
                if body.startswith(("'''", '"""')):
                    continue
                if body.startswith("'"):
                    single += 1
                elif body.startswith('"'):
                    double += 1
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return "'" if single > double else '"'


class CodeGen:
    """Builds statements and expressions from source templates.

    Templates write string literals with the `{q}` placeholder so that generated literals
    follow the file's quotes while user code spliced into them is left exactly as written.
    `target` is the oldest torch the code must run on (None: the newest): the AMP spellings
    below are the only place it matters. Without a `quote`, the one of `source` is found
    when a literal is first made: most second runs (the idempotence guard) never make one,
    and tokenizing the file is a large share of their cost.
    """

    def __init__(
        self,
        quote: str | None = None,
        line_length: int = DEFAULT_LINE_LENGTH,
        target: TorchVersion | None = None,
        source: str = "",
    ) -> None:
        self._quote = quote
        self._source = source
        self.line_length = line_length
        self.target = target

    @property
    def quote(self) -> str:
        if self._quote is None:
            self._quote = detect_quote(self._source)
        return self._quote

    def lit(self, text: str) -> str:
        return f"{self.quote}{text}{self.quote}"

    def autocast(self, device: str, dtype: str | None = None, enabled: str | None = None) -> str:
        """`torch.amp.autocast("cuda", dtype=torch.float16, enabled=...)` as source.

        Before torch 1.12 there is no `torch.amp`: `torch.cuda.amp.autocast(enabled=...)`,
        whose dtype is float16 on every release (and the only one before 1.10). `enabled`
        must be a bool: entering autocast with `enabled=1` raises TypeError on a GPU.
        """
        enabled = as_bool(enabled) if enabled else enabled
        if device == "cuda" and not allows(self.target, AMP_AUTOCAST):
            args = [] if dtype in (None, "float16") else [f"dtype=torch.{dtype}"]
            args += [f"enabled={enabled}"] if enabled else []
            return f"torch.cuda.amp.autocast({', '.join(args)})"
        args = [self.lit(device)]
        if dtype:
            args.append(f"dtype=torch.{dtype}")
        if enabled:
            args.append(f"enabled={enabled}")
        return f"torch.amp.autocast({', '.join(args)})"

    def grad_scaler(self, device: str, kwargs: list[tuple[str, str]] = ()) -> str:
        """`torch.amp.GradScaler("cuda", ...)` as source (device positional, rest keywords).

        Before torch 2.3 GradScaler takes no device: `torch.cuda.amp.GradScaler(...)`, with the
        same keywords (all of them exist since 1.6).
        """
        keywords = [f"{k}={as_bool(v) if k == 'enabled' else v}" for k, v in kwargs]
        if device == "cuda" and not allows(self.target, DEVICE_GRAD_SCALER):
            return f"torch.cuda.amp.GradScaler({', '.join(keywords)})"
        return f"torch.amp.GradScaler({', '.join([self.lit(device), *keywords])})"

    def stmt(self, code: str, indent_width: int = 0) -> cst.BaseStatement:
        """One statement; laid out by black when its first line would pass the line length."""
        if len(code.split("\n", 1)[0]) + indent_width > self.line_length:
            code = self._black(code, self.line_length - indent_width)
        return cst.parse_statement(code + "\n")

    def relayout(self, stmt: cst.BaseStatement, indent_width: int) -> cst.BaseStatement:
        """A user statement that an edit made too long, laid out by black; else unchanged."""
        if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) > 1:
            return stmt  # black would split `a; b` into two lines, which is not one statement
        code = cst.Module([]).code_for_node(stmt.with_changes(leading_lines=[])).rstrip("\n")
        if "\n" in code or len(code) + indent_width <= self.line_length:
            return stmt
        new = self.stmt(code, indent_width)
        return new.with_changes(leading_lines=stmt.leading_lines)

    @staticmethod
    def _black(code: str, width: int) -> str:
        import black

        mode = black.Mode(line_length=max(width, 40), string_normalization=False)
        try:
            return black.format_str(code + "\n", mode=mode).rstrip("\n")
        except Exception:  # black refuses odd input; the one-line form is still correct
            return code


BOOL_CALLS = {
    "bool",
    "isinstance",
    "issubclass",
    "callable",
    "hasattr",
    "is_enabled",
    "is_available",
}


def as_bool(code: str) -> str:
    """`code` where it is a bool by its form, else `bool(code)`.

    An `enabled=` flag is often an int (`--fp16 1`, a YAML `fp16: 1`). GradScaler keeps it
    as given and `scaler.is_enabled()` returns it, and autocast rejects anything but a bool.
    """
    try:
        node = cst.parse_expression(code)
    except cst.ParserSyntaxError:
        return code
    return code if _is_bool(node) else f"bool({code})"


def _is_bool(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.Name):
        return node.value in ("True", "False")
    if isinstance(node, cst.Comparison):
        return True
    if isinstance(node, cst.UnaryOperation):
        return isinstance(node.operator, cst.Not)
    if isinstance(node, cst.BooleanOperation):
        return _is_bool(node.left) and _is_bool(node.right)
    if isinstance(node, cst.Call):
        func = node.func
        name = func.attr.value if isinstance(func, cst.Attribute) else getattr(func, "value", "")
        return name in BOOL_CALLS
    return False
