"""Files as text and back: encodings, a UTF-8 BOM, atomic writes, the project's line length."""

from __future__ import annotations

import os
import tempfile
import tokenize
from functools import cache
from pathlib import Path

from apex2native.codegen import DEFAULT_LINE_LENGTH

BOM = b"\xef\xbb\xbf"


class DecodeError(Exception):
    """The bytes of a file are not text in the encoding it declares."""


def decode(data: bytes) -> tuple[str, str, bool]:
    """Text, encoding and whether a UTF-8 BOM leads the file."""
    bom = data.startswith(BOM)
    try:
        encoding, _ = tokenize.detect_encoding(iter(data.splitlines(keepends=True)).__next__)
    except SyntaxError as exc:
        raise DecodeError(f"cannot decode: {exc}") from exc
    if encoding == "utf-8-sig":
        encoding = "utf-8"
    body = data[len(BOM) :] if bom else data
    try:
        return body.decode(encoding), encoding, bom
    except (UnicodeDecodeError, LookupError) as exc:
        raise DecodeError(f"cannot decode as {encoding}: {exc.__class__.__name__}") from exc


def encode(text: str, encoding: str, bom: bool) -> bytes:
    return (BOM if bom else b"") + text.encode(encoding)


def read_text(path: str) -> str:
    """A file's text for reading only (undecodable bytes replaced; never written back)."""
    data = Path(path).read_bytes()
    try:
        return decode(data)[0]
    except DecodeError:
        return data.decode("utf-8", "replace")


def write_atomic(path: str, text: str, encoding: str, bom: bool) -> None:
    """Temp file in the same folder, same mode, then rename over the original."""
    target = Path(path)
    mode = target.stat().st_mode
    data = encode(text, encoding, bom)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".a2n")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@cache
def line_length_for(folder: str) -> int:
    """`[tool.black] line-length` of the nearest pyproject.toml above `folder`."""
    path = Path(folder)
    for candidate in (path, *path.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file():
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                return DEFAULT_LINE_LENGTH
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return DEFAULT_LINE_LENGTH
            value = data.get("tool", {}).get("black", {}).get("line-length")
            return int(value) if isinstance(value, int) else DEFAULT_LINE_LENGTH
    return DEFAULT_LINE_LENGTH
