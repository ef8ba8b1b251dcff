"""The oldest torch the rewritten code must run on: `--target-torch`, else the project's pins.

Pins are read the way ruff reads `requires-python`: from the rewritten file's folder upwards,
the nearest folder where one of these states a torch version decides:

- pyproject.toml: `[project] dependencies`, `[tool.poetry.dependencies]`;
- setup.cfg: `[options] install_requires`;
- setup.py: a literal `install_requires` list (read with `ast`, never executed);
- requirements*.txt and requirements/*.txt.

Several pins in that folder (a library's setup.py next to a dev requirements.txt, markers
per Python version) give the lowest of their minimums: the code must run on all of them.
A pin without a lower bound but with an upper one (`torch<2.0`) targets the newest release it
allows, as no pin at all targets the newest release (`None`: what pip installs for an
unpinned `torch`). Nothing found, or nothing parseable, is `None`.
"""

from __future__ import annotations

import ast
import configparser
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import NamedTuple

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from apex2native.discover import is_project_root


class TorchVersion(NamedTuple):
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


# The releases that brought each spelling the rewrite can write.
NATIVE_AMP = TorchVersion(1, 6)  # torch.cuda.amp: GradScaler, autocast, custom_fwd/bwd
AMP_AUTOCAST = TorchVersion(1, 12)  # the torch.amp namespace: torch.amp.autocast(device)
DEVICE_GRAD_SCALER = TorchVersion(2, 3)  # torch.amp.GradScaler(device)
DEVICE_CUSTOM_FWD = TorchVersion(2, 4)  # torch.amp.custom_fwd(device_type=...)

# old qualified name -> (new callable, how the device is given, the torch that has the new one)
RENAMES: dict[str, tuple[str, str, TorchVersion]] = {
    "torch.cuda.amp.GradScaler": ("torch.amp.GradScaler", "positional:cuda", DEVICE_GRAD_SCALER),
    "torch.cuda.amp.autocast": ("torch.amp.autocast", "positional:cuda", AMP_AUTOCAST),
    "torch.cpu.amp.autocast": ("torch.amp.autocast", "positional:cpu", AMP_AUTOCAST),
    "torch.cuda.amp.custom_fwd": (
        "torch.amp.custom_fwd",
        "keyword:device_type=cuda",
        DEVICE_CUSTOM_FWD,
    ),
    "torch.cuda.amp.custom_bwd": (
        "torch.amp.custom_bwd",
        "keyword:device_type=cuda",
        DEVICE_CUSTOM_FWD,
    ),
}

LAST_MINOR = {0: 4, 1: 13}  # `torch<2.0` allows 1.13 at most


def allows(target: TorchVersion | None, since: TorchVersion) -> bool:
    """Whether code for `target` may use what torch `since` introduced (unknown: the newest)."""
    return target is None or target >= since


def parse_target(text: str) -> TorchVersion:
    """`X.Y` (or `X.Y.Z`) from the command line; ValueError says what is wrong."""
    match = re.fullmatch(r"(\d+)\.(\d+)(\.\d+)?", text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a torch version: write X.Y, e.g. 2.1")
    version = TorchVersion(int(match[1]), int(match[2]))
    if version < NATIVE_AMP:
        raise ValueError(
            f"torch {version} has no native AMP (torch.cuda.amp came with {NATIVE_AMP}); "
            f"there is nothing to migrate apex to below {NATIVE_AMP}"
        )
    return version


@dataclass(frozen=True)
class Pin:
    """A torch version a project states, and where: `requirements.txt: torch>=1.8`."""

    version: TorchVersion
    source: str

    def problem(self) -> str | None:
        """Why the migrated code cannot honour this pin, if it cannot."""
        if self.version >= NATIVE_AMP:
            return None
        return (
            f"{self.source}: the project's minimum torch {self.version} has no native AMP "
            f"(it came with {NATIVE_AMP}); the rewrite targets torch {NATIVE_AMP}: raise the "
            f"pin, or pass --target-torch to say which torch the migrated code is for"
        )

    @property
    def target(self) -> TorchVersion:
        """The torch the rewrite writes for: the pin, but never below native AMP."""
        return max(self.version, NATIVE_AMP)


@cache
def pin_for(folder: str) -> Pin | None:
    """The torch pin that holds for files in `folder`: the nearest folder with one decides.

    The search stops at the project's root (a folder with pyproject.toml, setup.py,
    setup.cfg or .git): a pin in a folder above it belongs to another project.
    """
    path = Path(folder)
    pins = _folder_pins(str(path))
    if pins:
        return min(pins, key=lambda pin: pin.version)
    if is_project_root(path) or path.parent == path:
        return None
    return pin_for(str(path.parent))  # cached: a monorepo's folders share their parents


def unsupported(paths: Iterable[str]) -> list[str]:
    """What is wrong with the pins of these files' projects (below native AMP), once each."""
    folders = {
        str(Path(p).resolve().parent) if os.path.islink(p) else os.path.dirname(p) for p in paths
    }
    pins = {pin_for(str(Path(f).resolve())) for f in folders}
    return sorted(filter(None, (pin.problem() for pin in pins if pin is not None)))


def version_floor(specifiers: str) -> TorchVersion | None:
    """The oldest torch minor a specifier set admits (`>=1.8,<2` -> 1.8), or None."""
    try:
        specs = list(SpecifierSet(specifiers))
    except InvalidSpecifier:
        return None
    floors, ceilings = [], []
    for spec in specs:
        try:
            version = Version(spec.version.removesuffix(".*"))
        except InvalidVersion:
            continue
        minor = TorchVersion(*(version.release + (0,))[:2])
        if spec.operator in (">=", ">", "==", "~=", "==="):
            floors.append(minor)
        elif spec.operator in ("<", "<="):
            ceilings.append(_newest_below(spec.operator, version))
    if floors:
        return max(floors)
    known = [c for c in ceilings if c is not None]
    return min(known) if known else None


def _newest_below(operator: str, bound: Version) -> TorchVersion | None:
    """The newest torch minor `<bound` or `<=bound` allows (None: one this module can't name)."""
    major, minor, micro = (bound.release + (0, 0))[:3]
    if operator == "<=" or micro > 0:
        return TorchVersion(major, minor)
    if minor > 0:
        return TorchVersion(major, minor - 1)
    last = LAST_MINOR.get(major - 1)
    return TorchVersion(major - 1, last) if last is not None else None


def _torch_specifiers(requirements: Iterable[str]) -> Iterator[str]:
    """The version specifiers of the `torch` entries among PEP 508 requirement strings."""
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) == "torch" and requirement.specifier:
            yield str(requirement.specifier)


def _pyproject(path: Path) -> Iterator[str]:
    try:
        import tomllib
    except ImportError:  # Python < 3.11: pyproject.toml states nothing readable
        return
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    yield from _torch_specifiers(data.get("project", {}).get("dependencies", []) or [])
    poetry = data.get("tool", {}).get("poetry", {}).get("dependencies", {}) or {}
    for key, value in poetry.items():
        if canonicalize_name(key) == "torch":
            yield from _poetry_specifiers(value)


def _poetry_specifiers(value: object) -> Iterator[str]:
    """Poetry's `^2.1`, `~2.1`, `2.1.0`, `>=2.0,<3`, `a || b`, tables and lists of them."""
    if isinstance(value, list):
        for item in value:
            yield from _poetry_specifiers(item)
        return
    if isinstance(value, dict):
        value = value.get("version", "")
    if not isinstance(value, str):
        return
    for alternative in value.split("||"):
        alternative = re.sub(r"([<>=!~^]+)\s+", r"\1", alternative)
        parts = [p for p in re.split(r"[,\s]+", alternative.strip()) if p and p != "*"]
        converted = []
        for part in parts:
            if part.startswith("^") or (part.startswith("~") and not part.startswith("~=")):
                part = ">=" + part.lstrip("^~")
            elif part[0].isdigit():
                part = "==" + part
            converted.append(part)
        if converted:
            yield ",".join(converted)


def _setup_cfg(path: Path) -> Iterator[str]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except configparser.Error:
        return
    lines = parser.get("options", "install_requires", fallback="").splitlines()
    yield from _torch_specifiers(line.strip() for line in lines if line.strip())


def _setup_py(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    literals: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                literals[target.id] = node.value
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg != "install_requires":
                continue
            value = keyword.value
            if isinstance(value, ast.Name):
                value = literals.get(value.id, value)
            try:
                items = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                continue
            if isinstance(items, (list, tuple)):
                yield from _torch_specifiers(i for i in items if isinstance(i, str))


def _requirements(path: Path) -> Iterator[str]:
    """requirements.txt lines: comments, options (`-r`, `--hash`) and continuations handled."""
    text = path.read_text(encoding="utf-8").replace("\\\n", "")
    lines = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        line = re.split(r"\s--?\w", line)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    yield from _torch_specifiers(lines)


PIN_READERS = {"pyproject.toml": _pyproject, "setup.cfg": _setup_cfg, "setup.py": _setup_py}


@cache
def _folder_pins(folder: str) -> list[Pin]:
    path = Path(folder)
    readers = {path / name: reader for name, reader in PIN_READERS.items()}
    for requirements in sorted(path.glob("requirements*.txt")) + sorted(
        path.glob("requirements/*.txt")
    ):
        readers[requirements] = _requirements
    pins = []
    for file, reader in readers.items():
        if not file.is_file():
            continue
        try:
            specifiers = list(reader(file))
        except (OSError, UnicodeDecodeError, ValueError, SyntaxError, RecursionError):
            continue  # an unreadable file states nothing
        for spec in specifiers:
            floor = version_floor(spec)
            if floor is not None:
                pins.append(Pin(floor, f"{file}: torch{spec}"))
    return pins
