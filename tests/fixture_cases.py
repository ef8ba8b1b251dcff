"""Discovery of the before/after fixture pairs, shared by the tests and the update script."""

from __future__ import annotations

from pathlib import Path

from apex2native.engine import decode, encode, rewrite_text
from apex2native.options import Options

ROOT = Path(__file__).resolve().parent.parent
REWRITE = ROOT / "fixtures" / "rewrite"
LINE_LENGTH = 88


def cases() -> list[Path]:
    return sorted(REWRITE.rglob("*.in.py"))


def expected_path(case: Path) -> Path:
    return case.with_name(case.name[: -len(".in.py")] + ".out.py")


def case_id(case: Path) -> str:
    return case.relative_to(REWRITE).as_posix()[: -len(".in.py")]


def rewrite_bytes(data: bytes) -> bytes:
    """What `apex2native rewrite` would write for these bytes (88-column layout)."""
    text, encoding, bom = decode(data)
    new, _ = rewrite_text(text, Options(), LINE_LENGTH)
    return encode(new, encoding, bom)
