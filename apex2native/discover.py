"""Which files a run looks at: the paths given, walked, filtered by globs and .gitignore."""

from __future__ import annotations

import fnmatch
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SKIP_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".tox",
    ".nox",
    ".venv",
    "venv",
    "node_modules",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "site-packages",
}


@dataclass
class Discovery:
    """Files to process as (path, name shown to the user), and one error line per bad path."""

    files: list[tuple[str, str]] = field(default_factory=list)
    # files under the paths that --include/--exclude leave out: never written, but read,
    # so that a migration that would have to change them (a caller of a function whose
    # signature changes) is held back instead
    left_out: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def git_root(path: Path) -> Path | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (
        Path(out.stdout.strip()).resolve() if out.returncode == 0 and out.stdout.strip() else None
    )


def git_visible(root: Path, folder: Path) -> set[Path] | None:
    """Files git tracks or would track under `folder` (untracked but not ignored)."""
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
                str(folder),
            ],
            capture_output=True,
            check=False,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return {
        (root / p.decode("utf-8", "surrogateescape")).resolve()
        for p in out.stdout.split(b"\0")
        if p
    }


PROJECT_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg")


def is_project_root(folder: Path) -> bool:
    """A folder that holds a project marker: searches upward for config stop there."""
    return any((folder / marker).exists() for marker in PROJECT_MARKERS)


class GitIgnore:
    """A small .gitignore reader for folders outside a git work tree."""

    def __init__(self) -> None:
        # base folder -> (pattern, negate, dir_only), in file order
        self.rules: dict[Path, list[tuple[str, bool, bool]]] = {}

    def load(self, folder: Path) -> None:
        path = folder / ".gitignore"
        if not path.is_file():
            return
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            line = line[1:] if negate else line
            dir_only = line.endswith("/")
            self.rules.setdefault(folder, []).append((line.rstrip("/"), negate, dir_only))

    def ignored(self, path: Path, is_dir: bool) -> bool:
        """Rules of the folders above `path` only, the outermost first: a later match wins."""
        result = False
        for base in reversed(path.parents):
            for pattern, negate, dir_only in self.rules.get(base, ()):
                if dir_only and not is_dir:
                    continue
                pat = pattern.lstrip("/")
                if "/" in pattern.strip("/"):  # anchored: matched against the relative path
                    hit = fnmatch.fnmatch(path.relative_to(base).as_posix(), pat)
                else:
                    hit = fnmatch.fnmatch(path.name, pat)
                if hit:
                    result = not negate
        return result


def _folders_up_to_project_root(folder: Path) -> list[Path]:
    """The folders above `folder` up to the nearest one that marks a project root (.git,
    pyproject.toml, setup.py, setup.cfg), the outermost first; none when no root is found:
    their .gitignore files apply to the folder too, as in git."""
    chain = []
    for parent in folder.parents:
        chain.append(parent)
        if is_project_root(parent):
            return list(reversed(chain))
    return []


def _matches(display: str, globs: tuple[str, ...]) -> bool:
    name = display.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(display, g) or fnmatch.fnmatch(name, g) for g in globs)


def display_base(paths: list[Path]) -> Path:
    """Names are shown relative to the git work tree that holds the paths, else to the cwd."""
    cwd = Path.cwd().resolve()
    existing = [p for p in paths if p.exists()]
    root = (
        git_root(existing[0] if existing[0].is_dir() else existing[0].parent) if existing else None
    )
    if root and all(_within(p.resolve(), root) for p in existing):
        return root
    return cwd


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _display(path: Path, base: Path) -> str:
    """Relative to the base where possible, else absolute (never a `../..` walk)."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def discover(
    paths: list[str],
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    respect_gitignore: bool = True,
) -> Discovery:
    """Python files under `paths`, each once, sorted by the name shown."""
    found = Discovery()
    given = [Path(p) for p in paths]
    base = display_base(given)
    seen: set[Path] = set()
    for raw, path in zip(paths, given):
        if not path.exists():
            found.errors.append(f"{raw}: no such file or directory")
            continue
        if path.is_file():
            if path.suffix not in (".py", ".pyi"):
                found.errors.append(f"{raw}: not a Python file")
                continue
            resolved = path.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.files.append((str(resolved), _display(resolved, base)))
            continue
        walked = False
        for resolved in _walk(path.resolve(), respect_gitignore):
            walked = True
            display = _display(resolved, base)
            if (include and not _matches(display, include)) or (
                exclude and _matches(display, exclude)
            ):
                if resolved not in seen:
                    seen.add(resolved)
                    found.left_out.append((str(resolved), display))
                continue
            if resolved not in seen:
                seen.add(resolved)
                found.files.append((str(resolved), display))
        if not walked and respect_gitignore and next(_walk(path.resolve(), False), None):
            found.warnings.append(
                f"{raw}: every Python file under it is ignored by .gitignore "
                "(--no-gitignore includes them)"
            )
    found.files.sort(key=lambda pair: pair[1])
    return found


def _walk(folder: Path, respect_gitignore: bool):
    visible = None
    if respect_gitignore:
        root = git_root(folder)
        if root is not None:
            visible = git_visible(root, folder)
    ignore = GitIgnore()
    if respect_gitignore and visible is None:
        above = _folders_up_to_project_root(folder)
        for parent in above:
            ignore.load(parent)
        if any(ignore.ignored(d, True) for d in [*above[1:], folder]):
            return  # the folder given, or one above it, is ignored itself
    for current, dirs, files in os.walk(folder):
        here = Path(current)
        if respect_gitignore and visible is None:
            ignore.load(here)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in SKIP_DIRS
            and not d.endswith(".egg-info")
            and not (visible is None and respect_gitignore and ignore.ignored(here / d, True))
        )
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = here / name
            if visible is not None and path not in visible:
                continue
            if visible is None and respect_gitignore and ignore.ignored(path, False):
                continue
            yield path
