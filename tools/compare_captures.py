"""Compare two capture files value by value: ``python tools/compare_captures.py A.npz B.npz [--tol 1e-6]``.

Prints the largest absolute difference per key and exits 1 when any key differs by more than
``--tol`` (or a non-float key differs at all).  Used to check that a refactor changes no result.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def compare(a_path: str, b_path: str, tol: float) -> tuple[float, list[str]]:
    """-> (largest float difference, keys that differ beyond ``tol``)."""
    with np.load(a_path, allow_pickle=False) as a, np.load(b_path, allow_pickle=False) as b:
        bad, worst = sorted(set(a.files) ^ set(b.files)), 0.0
        for k in sorted(set(a.files) & set(b.files)):
            x, y = a[k], b[k]
            if x.shape != y.shape:
                bad.append(k)
            elif x.dtype.kind in "fc":
                d = float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max()) if x.size else 0.0
                worst = max(worst, d)
                if d > tol:
                    bad.append(f"{k} ({d:.3g})")
            elif not np.array_equal(x, y):
                bad.append(k)
    return worst, bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tol", type=float, default=1e-6)
    args = p.parse_args()
    worst, bad = compare(args.a, args.b, args.tol)
    print(f"{args.a} vs {args.b}: max abs difference {worst:.3g}" + (f"; differ: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
