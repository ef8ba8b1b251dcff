"""Run many small Python programs, importing torch once: each runs in a fork of one server.

Most of a small training program's run is the interpreter importing torch (seconds per
process on two cores); a server that imports it once and forks a child per program pays it
once (and TorchDynamo's, which making any optimizer imports; it reads TORCHDYNAMO_DISABLE
at call time). The server never runs a torch op, so no thread pool exists when it forks.

Each child becomes `python ARGV...` run in its folder, as far as the program can tell: its
environment, `sys.argv`, `sys.path` (script folder, then the job's PYTHONPATH), a
`sitecustomize` found on that path imported first, uncaught exceptions through
`sys.excepthook`, `atexit` handlers at the end. Use it from tests as

    with ForkServer() as server:
        results = server.run([Job(folder, ["main.py"]), ...])

Protocol (stdin/stdout of the server, one JSON line per batch): a list of jobs in, a list
of results out, in order: {"returncode": N, "timed_out": bool, "wall_s": seconds}; the
client adds the tails of the job's stdout and stderr files.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import runpy
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass

POLL_S = 0.02


@dataclass
class Job:
    """One program: `python ARGV` in `cwd`, with `env` (None: the server's own)."""

    cwd: str
    argv: list[str]
    env: dict[str, str] | None = None
    stdout: str = os.devnull
    stderr: str = os.devnull
    timeout: float = 600.0


@dataclass
class Result:
    returncode: int | None
    timed_out: bool
    wall_s: float
    stdout_tail: str = ""
    stderr_tail: str = ""


TAIL_CHARS = 4000


def _tail(path: str) -> str:
    if path == os.devnull:
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()[-TAIL_CHARS:]


class ForkServer:
    """A server process that has imported torch; `run` sends it one batch of jobs."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ForkServer:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, str(self.workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            self.proc = None

    def run(self, jobs: list[Job]) -> list[Result]:
        """Run the jobs (up to `workers` at once) and return their results in order."""
        assert self.proc is not None, "use ForkServer as a context manager"
        self.proc.stdin.write(json.dumps([asdict(job) for job in jobs]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fork server exited with status {self.proc.wait()}")
        return [
            Result(**result, stdout_tail=_tail(job.stdout), stderr_tail=_tail(job.stderr))
            for job, result in zip(jobs, json.loads(line))
        ]


def _become(job: dict) -> None:
    """In the child: become `python ARGV...` in the job's folder, then exit with its status."""
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    if job["env"] is not None:
        os.environ.clear()
        os.environ.update(job["env"])
    os.chdir(job["cwd"])
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    rest = [p for p in sys.path[1:] if p not in extra]
    sys.path[:] = [os.path.abspath(job["cwd"]), *extra, *rest]
    sys.argv = list(job["argv"])
    status = 0
    try:
        sys.modules.pop("sitecustomize", None)  # the server's own, if the machine has one
        if importlib.util.find_spec("sitecustomize") is not None:
            import sitecustomize  # noqa: F401  (as the interpreter would at startup)
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    try:
        atexit._run_exitfuncs()
    except BaseException:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _run_batch(jobs: list[dict], workers: int) -> list[dict]:
    pending = list(enumerate(jobs))
    running: dict[int, tuple[int, float]] = {}
    results: dict[int, dict] = {}
    while pending or running:
        while pending and len(running) < workers:
            index, job = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                _become(job)
            running[pid] = (index, time.monotonic())
        pid, status = os.waitpid(-1, os.WNOHANG)
        now = time.monotonic()
        if pid == 0:
            for child, (index, start) in running.items():
                if now - start > jobs[index]["timeout"] and index not in results:
                    os.kill(child, 9)
                    results[index] = {"returncode": None, "timed_out": True}
            time.sleep(POLL_S)
            continue
        index, start = running.pop(pid)
        result = results.setdefault(index, {"returncode": os.waitstatus_to_exitcode(status)})
        result.setdefault("timed_out", False)
        result["wall_s"] = now - start
    return [results[index] for index in range(len(jobs))]


def serve(workers: int) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch  # noqa: F401  (imported once, before any fork)
        import torch._dynamo  # noqa: F401  (what constructing any optimizer imports)

    for line in sys.stdin:
        print(json.dumps(_run_batch(json.loads(line), workers)), flush=True)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
