"""Regenerate every `.out.py` from its `.in.py` (review the git diff before committing!)."""

from __future__ import annotations

from fixture_cases import cases, expected_path, rewrite_bytes

if __name__ == "__main__":
    for case in cases():
        out = expected_path(case)
        new = rewrite_bytes(case.read_bytes())
        if not out.exists() or out.read_bytes() != new:
            out.write_bytes(new)
            print(f"updated {out}")
