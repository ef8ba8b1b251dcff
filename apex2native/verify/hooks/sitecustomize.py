"""Injected by `apex2native verify`: chain-load the shadowed sitecustomize, then install hooks.

Python imports `sitecustomize` at startup in every interpreter whose PYTHONPATH holds this
directory (also torchrun ranks and multiprocessing children). The hooks only activate when
the harness set A2N_VERIFY_DIR.
"""

import importlib.machinery
import importlib.util
import os
import sys


def _chain_load() -> None:
    here = os.path.dirname(os.path.realpath(__file__))
    rest = [p for p in sys.path if os.path.realpath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or spec.origin is None:
        return
    if os.path.realpath(spec.origin) == os.path.realpath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


_chain_load()

if os.environ.get("A2N_VERIFY_DIR"):
    import a2n_verify_hooks

    a2n_verify_hooks.install()
