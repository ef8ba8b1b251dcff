"""Directory put first on PYTHONPATH of every side: `sitecustomize` plus its hook package.

Only `sitecustomize.py` and the `a2n_verify_hooks` package live here, so putting this
directory on a user's PYTHONPATH cannot shadow any of their modules.
"""
