"""Build the shipped MediaPipe-468 -> built-in face correspondence.

    .venv/bin/python tools/build_face_correspondence.py [--face-model builtin|BFM.mat] [--out PATH]

Renders the face model's mean shape from several viewpoints (the built-in face inside
the built-in body's head, with eyes), runs MediaPipe's attention face mesh on the
renders and traces every landmark back to the surface (see
:mod:`model_runtime.face.correspondence`).  For the built-in face it also writes MediaPipe's
left/right mirror table (``assets/face_mp468_mirror.npz``, from the renders and their flips), with
which the runtime makes the correspondence symmetric (``face/symmetry.py: symmetrize``, off by default).  Deterministic for a given
model and MediaPipe version; takes ~20 s on the 2-core CPU.  Re-run it whenever
``assets/face_builtin.npz`` changes (the runtime refuses a stale file by its
model signature).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime.models.load import load_face_model  # noqa: E402
from model_runtime.face.correspondence import (BUILTIN_CORRESPONDENCE_PATH, OVAL_WEIGHT,  # noqa: E402
                                               build_correspondence, build_mirror_table)
from model_runtime.face.symmetry import BUILTIN_MIRROR_PATH  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--face-model", default="builtin", help="'builtin' or a BFM .mat file")
    ap.add_argument("--out", type=Path, default=None, help=f"output .npz (default: {BUILTIN_CORRESPONDENCE_PATH})")
    args = ap.parse_args(argv)
    model = load_face_model(args.face_model)
    corr = build_correspondence(model)
    out = args.out or BUILTIN_CORRESPONDENCE_PATH
    out.parent.mkdir(parents=True, exist_ok=True)
    corr.save(out)
    w = corr.weights
    print(f"wrote {out}: signature {corr.model_signature}, weights mean {w.mean():.2f} "
          f"(>0.5: {(w > 0.5).sum()} of {len(w)} points; face-oval factor {OVAL_WEIGHT}), "
          f"median spread over views {1000 * float(np.median(corr.spread_m)):.1f} mm")
    if args.face_model == "builtin" and args.out is None:
        mirror = build_mirror_table(model)
        np.savez_compressed(BUILTIN_MIRROR_PATH, mirror=mirror.astype(np.int16))
        print(f"wrote {BUILTIN_MIRROR_PATH}: MediaPipe's mirror table, {(mirror == np.arange(len(mirror))).sum()} "
              "midline landmarks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
