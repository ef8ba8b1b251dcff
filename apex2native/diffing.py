"""Unified diffs that `git apply` accepts: a/ b/ names, exact bytes, newline-at-EOF markers."""

from __future__ import annotations

import difflib

from apex2native.findings import FileOutcome

NO_NEWLINE = b"\\ No newline at end of file\n"


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def file_diff(outcome: FileOutcome, context: int = 3) -> bytes:
    """The diff of one changed file, in the file's own bytes (encoding, BOM, CRLF kept)."""
    from apex2native.engine import encode

    old = encode(outcome.old_text or "", outcome.encoding, outcome.bom)
    new = encode(outcome.new_text or "", outcome.encoding, outcome.bom)
    # an absolute name (a file outside the cwd and any git work tree) is written as git
    # writes one: `a/tmp/x.py`, applied from the root of the file system
    name = outcome.path.lstrip("/").encode("utf-8", "surrogateescape")
    out = [b"diff --git a/" + name + b" b/" + name + b"\n"]
    body = list(
        difflib.diff_bytes(
            difflib.unified_diff,
            _lines(old),
            _lines(new),
            b"a/" + name,
            b"b/" + name,
            n=context,
            lineterm=b"\n",
        )
    )
    for line in body:
        if line.startswith((b"---", b"+++")) and not line.endswith(b"\n"):
            line += b"\n"
        if line.startswith((b"---", b"+++", b"@@")):
            out.append(line)
            continue
        out.append(line)
        if not line.endswith(b"\n"):
            out.append(b"\n" + NO_NEWLINE)
    return b"".join(out)


def diff_all(outcomes: list[FileOutcome]) -> bytes:
    """Diffs of every changed file, in the stable (sorted) order of the outcomes."""
    return b"".join(file_diff(o) for o in outcomes if o.status == "changed")
