import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fork_server import ForkServer  # noqa: E402  (found through the path set above)


@pytest.fixture(scope="session")
def fork_server():
    """One process that has imported torch, forking a child per program (tests/fork_server.py)."""
    with ForkServer() as server:
        yield server
