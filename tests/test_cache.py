"""The result cache: a repeated run gives the same answer, and a changed input is never
answered from the cache."""

from __future__ import annotations

import enum
import os
import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixture_cases import REWRITE

from apex2native import target
from apex2native.cache import FOLDER_NAME, Cache, canonical, fingerprint, map_cached
from apex2native.cli import main
from apex2native.facts import FileFacts

BASIC = (REWRITE / "initialize" / "literal_o1_training_loop.in.py").read_bytes()


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    monkeypatch.delenv("APEX2NATIVE_CACHE_DIR", raising=False)
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    (project / "pkg" / "train.py").write_bytes(BASIC)
    return project


def entries(project: Path) -> list[Path]:
    return [p for p in (project / FOLDER_NAME / fingerprint()).rglob("*") if p.is_file()]


def test_canonical_sorts_sets_and_keeps_dict_and_list_order():
    assert canonical({"b", "a"}) == canonical({"a", "b"})
    assert canonical({"x": 1, "y": 2}) != canonical({"y": 2, "x": 1})
    assert canonical([1, 2]) != canonical([2, 1])
    assert canonical(FileFacts(exports={"b", "a"})) == canonical(FileFacts(exports={"a", "b"}))
    assert canonical((1,)) != canonical([1])


def test_canonical_tells_apart_what_a_key_must_tell_apart():
    class Level(enum.IntEnum):
        O1 = 1

    assert canonical(FileFacts(module="a")) != canonical(FileFacts(module="b"))
    assert canonical(1) != canonical("1") != canonical(b"1")
    assert canonical(True) != canonical(1)
    assert canonical(Level.O1) == repr(Level.O1)  # a subclass of int keeps its own repr
    assert canonical({"a": [1, (2,)]}) == "dict['a':list[1,tuple[2]]]"
    assert canonical(frozenset({"a"})) == canonical({"a"})


def test_an_input_the_key_cannot_describe_is_not_cached(tmp_path):
    cache = Cache(tmp_path)
    assert cache.key("kind", object()) is None
    calls = []
    assert map_cached(cache, calls.append, [1], [None]) == [None]
    assert map_cached(cache, calls.append, [1], [None]) == [None]
    assert calls == [1, 1]


def test_a_broken_entry_is_a_miss_and_is_replaced(tmp_path):
    cache = Cache(tmp_path)
    key = cache.key("kind", "input")
    cache.put(key, "value")
    cache._path(key).write_bytes(b"not a pickle")
    assert map_cached(cache, lambda _: "fresh", [None], [key]) == ["fresh"]
    assert pickle.loads(cache._path(key).read_bytes()) == "fresh"


def test_the_cache_lives_at_the_project_root_hidden_from_git(tree):
    result = run("rewrite", "--check", "-q", str(tree / "pkg"))
    assert result.exit_code == 1
    folder = tree / FOLDER_NAME
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    assert (folder / "CACHEDIR.TAG").is_file()
    assert entries(tree)


def test_entries_of_another_tool_version_are_dropped(tree):
    stale = tree / FOLDER_NAME / "0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "entry").write_bytes(b"old")
    keep = tree / FOLDER_NAME / "notes"
    keep.mkdir()
    run("rewrite", "--check", "-q", str(tree))
    assert not stale.exists()
    assert keep.is_dir()


def test_a_second_run_answers_from_the_cache_with_the_same_output(tree):
    first = run("rewrite", "--diff", str(tree))
    stored = sorted(p.stat().st_mtime_ns for p in entries(tree))
    second = run("rewrite", "--diff", str(tree))
    assert second.exit_code == first.exit_code == 1
    assert second.stdout == first.stdout and second.stderr == first.stderr
    assert sorted(p.stat().st_mtime_ns for p in entries(tree)) == stored  # nothing recomputed


def test_a_changed_file_is_rewritten_afresh(tree):
    run("rewrite", "--check", "-q", str(tree))
    train = tree / "pkg" / "train.py"
    train.write_bytes(BASIC.replace(b'opt_level="O1"', b'opt_level="O0"'))
    assert train.read_bytes() != BASIC
    cached = run("rewrite", "--diff", str(tree))
    fresh = run("rewrite", "--diff", "--no-cache", str(tree))
    assert cached.stdout == fresh.stdout and cached.exit_code == fresh.exit_code


def test_a_changed_project_pin_is_not_answered_from_the_cache(tree):
    run("rewrite", "--check", "-q", str(tree))
    (tree / "requirements.txt").write_text("torch>=1.10\n")
    target.pin_for.cache_clear()  # a new process would read the pins afresh
    target._folder_pins.cache_clear()
    cached = run("rewrite", "--diff", str(tree))
    fresh = run("rewrite", "--diff", "--no-cache", str(tree))
    assert cached.stdout == fresh.stdout
    assert "torch.cuda.amp" in cached.stdout  # torch 1.10 has no torch.amp.GradScaler


def test_no_cache_reads_and_writes_nothing(tree):
    result = run("rewrite", "--check", "-q", "--no-cache", str(tree))
    assert result.exit_code == 1
    assert not (tree / FOLDER_NAME).exists()


def test_an_unwritable_project_runs_without_a_cache(tree, monkeypatch):
    blocker = tree / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("APEX2NATIVE_CACHE_DIR", str(blocker / "cache"))
    result = run("rewrite", "--check", "-q", str(tree))
    assert result.exit_code == 1
    assert os.path.isfile(blocker)
