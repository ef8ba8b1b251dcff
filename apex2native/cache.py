"""Results of earlier runs, by content, so that a repeated run pays only for what changed.

Like ruff's cache: CI that runs `rewrite --check` on every push re-reads a repository that
is mostly as it was. Two pure functions are cached: the phase-1 summary of a file (a
function of its text and module name) and the rewrite of one file (a function of its bytes,
the plan's facts for it, its options and its line length). A key is a hash of all of them,
and of the tool itself: any change to apex2native's code, to libcst or to Python starts
afresh. The repository checks and the hold-back rounds always run; they take the cached
pieces as inputs.

Entries are pickles under `<folder>/<tool fingerprint>/`, written to a temporary file and
renamed, so that runs side by side never read half an entry. A broken entry is a miss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from apex2native.discover import is_project_root

FOLDER_NAME = ".apex2native_cache"
ENV_FOLDER = "APEX2NATIVE_CACHE_DIR"
MISSING = object()


@cache
def fingerprint() -> str:
    """A hash of the tool's code, libcst's version and Python's: what every key depends on."""
    import libcst

    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update(getattr(libcst, "__version__", "?").encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def canonical(value: object) -> str:
    """A stable text for plain data: dataclasses, containers, strings, numbers.

    Sets are sorted (their order differs between processes); dicts and lists keep their
    order. Anything else raises TypeError: an input the key cannot describe is not cached.
    A warm run is mostly key making, so the common types are tested by identity first.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return repr(value)
    if kind is dict:
        return _dict(value)  # type: ignore[arg-type]
    if kind is list or kind is tuple:
        return f"{kind.__name__}[{','.join(map(canonical, value))}]"  # type: ignore[call-overload]
    if isinstance(value, (bool, int, float, str, bytes)):
        return repr(value)
    names = _dataclass_fields(kind)
    if names is not None:
        fields = (f"{name}={canonical(getattr(value, name))}" for name in names)
        return f"{kind.__qualname__}({','.join(fields)})"
    if isinstance(value, (list, tuple)):
        return f"{kind.__name__}[{','.join(canonical(v) for v in value)}]"
    if isinstance(value, (set, frozenset)):
        return f"set[{','.join(sorted(canonical(v) for v in value))}]"
    if isinstance(value, dict):
        return _dict(value)
    raise TypeError(f"no canonical form for {kind.__name__}")


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _dict(value: dict) -> str:
    return f"dict[{','.join(f'{canonical(k)}:{canonical(v)}' for k, v in value.items())}]"


def _dataclass_fields(kind: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type (None for any other type), looked up once."""
    try:
        return _FIELDS[kind]
    except KeyError:
        pass
    except TypeError:  # a type whose metaclass makes it unhashable
        return _field_names(kind)
    _FIELDS[kind] = names = _field_names(kind)
    return names


def _field_names(kind: type) -> tuple[str, ...] | None:
    if not dataclasses.is_dataclass(kind) or kind is type:
        return None
    return tuple(f.name for f in dataclasses.fields(kind))


class Cache:
    """One cache folder; `get`/`put` by the key `key()` makes of a result's inputs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.entries = folder / fingerprint()
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_paths(cls, paths: list[str]) -> Cache | None:
        """The cache of the project the paths are in ($APEX2NATIVE_CACHE_DIR wins), or
        None where it cannot be made (a read-only checkout)."""
        override = os.environ.get(ENV_FOLDER)
        folder = Path(override) if override else project_root(paths) / FOLDER_NAME
        try:
            _prepare(folder)
        except OSError:
            return None
        return cls(folder)

    def key(self, kind: str, *parts: object) -> str | None:
        try:
            text = canonical((kind, *parts))
        except TypeError:
            return None
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, key: str | None) -> object:
        if key is None:
            return MISSING
        try:
            with open(self._path(key), "rb") as handle:
                value = pickle.load(handle)
        except Exception:  # absent, broken or foreign: a miss, never an error
            self.misses += 1
            return MISSING
        self.hits += 1
        return value

    def put(self, key: str | None, value: object) -> None:
        if key is None:
            return
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            return

    def _path(self, key: str) -> Path:
        return self.entries / key[:2] / key


def project_root(paths: list[str]) -> Path:
    """The nearest folder at or above the paths' common folder that holds a project marker
    (.git, pyproject.toml, setup.py, setup.cfg); the common folder when none does."""
    folders = [Path(p).resolve() for p in paths] or [Path.cwd()]
    folders = [f if f.is_dir() else f.parent for f in folders]
    common = Path(os.path.commonpath([str(f) for f in folders]))
    for candidate in (common, *common.parents):
        if is_project_root(candidate):
            return candidate
    return common


def _prepare(folder: Path) -> None:
    """Make the folder, hidden from git, and drop the entries of other tool versions."""
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# made by apex2native\n*\n", encoding="utf-8")
    tag = folder / "CACHEDIR.TAG"
    if not tag.exists():
        tag.write_text(
            "Signature: 8a477f597d28d172789f06886806bc55\n# apex2native's cache\n",
            encoding="utf-8",
        )
    current = fingerprint()
    for child in folder.iterdir():
        name = child.name
        if child.is_dir() and name != current and len(name) == 16 and _hex(name):
            shutil.rmtree(child, ignore_errors=True)


def _hex(name: str) -> bool:
    return all(c in "0123456789abcdef" for c in name)


def map_cached(
    cache: Cache | None,
    func: Callable[[Any], Any],
    args: list,
    keys: list[str | None],
    pool=None,
    chunksize: int = 8,
    pool_from: int = 16,
) -> list:
    """`[func(a) for a in args]`, taking what the cache holds and storing the rest.

    The misses run in `pool` when there are more than `pool_from` of them.
    """
    results: list = [MISSING] * len(args)
    if cache is not None:
        results = [cache.get(k) for k in keys]
    todo = [i for i, r in enumerate(results) if r is MISSING]
    work = [args[i] for i in todo]
    if pool is not None and len(work) > pool_from:
        done = list(pool.map(func, work, chunksize=chunksize))
    else:
        done = [func(a) for a in work]
    for i, value in zip(todo, done):
        results[i] = value
        if cache is not None:
            cache.put(keys[i], value)
    return results
