"""Discovery of the before/after fixture pairs, shared by the tests and the update script.

A fixture rewrites with `Options()` unless its first line states a target torch:
`# apex2native-fixture: target-torch=2.1` (as `--target-torch 2.1` would).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from apex2native import engine
from apex2native.engine import decode, encode
from apex2native.options import Options
from apex2native.target import parse_target

ROOT = Path(__file__).resolve().parent.parent
REWRITE = ROOT / "fixtures" / "rewrite"
LINE_LENGTH = 88


def cases() -> list[Path]:
    return sorted(REWRITE.rglob("*.in.py"))


def expected_path(case: Path) -> Path:
    return case.with_name(case.name[: -len(".in.py")] + ".out.py")


def case_id(case: Path) -> str:
    return case.relative_to(REWRITE).as_posix()[: -len(".in.py")]


def fixture_options(text: str) -> Options:
    """Options(), or with the target torch the fixture's first line states."""
    match = re.match(r"# apex2native-fixture: target-torch=(\S+)", text)
    return Options(target_torch=parse_target(match[1])) if match else Options()


def rewrite_bytes(data: bytes) -> bytes:
    """What `apex2native rewrite` would write for these bytes, as a one-file repository:
    the same engine, rounds and repository check as the command (88-column layout)."""
    text, _, _ = decode(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.py"
        path.write_bytes(data)
        (outcome,) = engine.run([(str(path), "case.py")], fixture_options(text))
    assert outcome.status != "failed", f"the rewrite failed: {outcome.error}"
    if outcome.status != "changed" or outcome.new_text is None:
        return data
    return encode(outcome.new_text, outcome.encoding, outcome.bom)
