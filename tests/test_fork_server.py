"""The fork server the CPU-run tests use reports a program's failure as `python` would."""

from __future__ import annotations

import os

from fork_server import Job


def _job(tmp_path, name: str, source: str, **kwargs) -> Job:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "main.py").write_text(source)
    return Job(str(folder), ["main.py", "--flag"], stderr=str(folder / "err"), **kwargs)


def test_status_exceptions_atexit_environment_path_sitecustomize_and_timeouts(
    tmp_path, fork_server
):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper.py").write_text("CODE = 3\n")
    (lib / "sitecustomize.py").write_text("import os\nos.environ['SEEN'] = '1'\n")
    jobs = [
        _job(tmp_path, "ok", "import torch\nprint(torch.ones(2).sum())\n"),
        _job(
            tmp_path,
            "raises",
            "import atexit, sys\n"
            "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
            "raise ValueError(sys.argv[1])\n",
        ),
        _job(
            tmp_path,
            "exits",
            "import os, sys\nsys.exit(int(os.environ['CODE']))\n",
            env=dict(os.environ, CODE="3"),
        ),
        _job(
            tmp_path,
            "path",
            "import os, helper\nraise SystemExit(helper.CODE + int(os.environ['SEEN']))\n",
            env=dict(os.environ, PYTHONPATH=str(lib)),
        ),
        _job(tmp_path, "hangs", "import time\ntime.sleep(30)\n", timeout=0.5),
    ]
    results = fork_server.run(jobs)
    assert [r.returncode for r in results] == [0, 1, 3, 4, None]
    assert [r.timed_out for r in results] == [False] * 4 + [True]
    raised = results[1].stderr_tail
    assert "ValueError: --flag" in raised and raised.endswith("atexit ran\n")
