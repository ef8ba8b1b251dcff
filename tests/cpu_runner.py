"""Run many `main.py` programs, importing torch once: each runs in a fork of this process.

Most of a small program's run is the interpreter importing torch (seconds per process on
two cores); forking after the import pays it once. This process never runs a torch op, so
no thread pool exists yet when it forks. Usage (a list of folders, results as JSON lines):

    python tests/cpu_runner.py DIR... > results.jsonl

Each line: {"dir": DIR, "returncode": N, "stderr": the last 3000 characters}.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
import traceback


def run_one(folder: str, stderr_path: str) -> None:
    """In the child: become `python main.py` run in `folder`, then exit with its status."""
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    os.chdir(folder)
    sys.path[0] = folder
    sys.argv = ["main.py"]
    status = 0
    try:
        runpy.run_path("main.py", run_name="__main__")
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(folders: list[str], workers: int) -> None:
    import warnings

    warnings.simplefilter("ignore")
    import torch  # noqa: F401  (imported once, before any fork)

    scratch = tempfile.mkdtemp()
    pending = list(enumerate(folders))
    running: dict[int, tuple[int, str]] = {}
    results: dict[int, dict] = {}
    while pending or running:
        while pending and len(running) < workers:
            index, folder = pending.pop(0)
            err = os.path.join(scratch, f"{index}.err")
            pid = os.fork()
            if pid == 0:
                run_one(folder, err)
            running[pid] = (index, err)
        pid, status = os.wait()
        index, err = running.pop(pid)
        with open(err, encoding="utf-8", errors="replace") as handle:
            tail = handle.read()[-3000:]
        code = os.waitstatus_to_exitcode(status)
        results[index] = {"dir": folders[index], "returncode": code, "stderr": tail}
    for index in range(len(folders)):
        print(json.dumps(results[index]))


if __name__ == "__main__":
    main(sys.argv[1:], max(1, os.cpu_count() or 1))
