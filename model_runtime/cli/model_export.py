"""``python -m model_runtime model export``: write the merged body+face mesh as OBJ or avatar ``.npz``.

    python -m model_runtime model export --out avatar.obj
    python -m model_runtime model export --out frame.obj --pose capture.npz --frame 120
    python -m model_runtime model export --out pose.obj --pose pose.json
    python -m model_runtime model export --format npz --out avatar.npz --face BFM_model_front.mat --person capture.npz
    python -m model_runtime model export --bench 256          # LBS speed, no file written

``--format npz`` writes the avatar file of :mod:`model_runtime.models.avatar_file`
(rest mesh, triangles, skin weights, rest joints, expression shape-key deltas,
albedo colours, names; numpy only to read) for one person: shape ``betas``,
face ``identity`` and ``albedo`` from ``--person`` (a capture ``.npz``, or a
``.npz``/``.json`` with any of ``betas``, ``identity``, ``albedo``; default:
the mean person).  The Blender add-on uses it for face models its own Python
cannot read (a Basel ``.mat`` needs scipy).

``--pose`` takes a capture ``.npz`` (frame ``--frame``) or a small ``.npz``/``.json``
with ``pose_6d`` ``(52, 6)`` and optional ``betas`` ``(<=16,)``, ``expression``
``(Ke,)``, ``identity`` ``(Ki,)``.  The OBJ is in model space (metres, Y up,
facing +Z) with per-vertex colours ``v x y z r g b`` (face: mean albedo).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..models.avatar_file import avatar_arrays, write_avatar_file
from ..core.capture_file import load_capture
from ..core.errors import EXIT_USAGE, ModelFileError
from ..models.full_model import FullBodyModel
from ..core.rotations import rot6d_to_matrix
from ..core.skeleton import NUM_BETAS, NUM_JOINTS
from .model_info import add_model_arguments, load_models

__all__ = ["add_arguments", "run", "PoseParams", "read_pose_file", "read_person_file", "write_obj", "bench_forward"]

PoseParams = dict  # keys: pose_6d (52, 6), betas (16,), identity (Ki,), expression (Ke,)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--out", type=Path, help="file to write: OBJ mesh, or avatar .npz with --format npz")
    p.add_argument("--format", choices=("obj", "npz"), default=None,
                   help="obj: posed mesh with colours; npz: avatar file (default: from the --out suffix)")
    p.add_argument("--person", type=Path, default=None,
                   help="for --format npz: capture .npz, or .npz/.json with betas [identity albedo]; default: mean")
    p.add_argument("--pose", type=Path, default=None,
                   help="capture .npz, or .npz/.json with pose_6d [betas expression identity]; default: rest pose")
    p.add_argument("--frame", type=int, default=0, help="frame of a capture file (default 0)")
    p.add_argument("--bench", type=int, default=0, metavar="B",
                   help="time the merged-model forward pass for a batch of B random poses (torch, CPU)")
    p.add_argument("--threads", type=int, default=0, help="torch threads for --bench (0: torch default)")


def _vector(src: str, data: dict, key: str, size: int, default_zero: bool = True) -> np.ndarray:
    if key not in data:
        if default_zero:
            return np.zeros(size, np.float32)
        raise ModelFileError(src, key, "is missing")
    v = np.asarray(data[key], np.float32).reshape(-1)
    if v.size > size:
        raise ModelFileError(src, key, f"has {v.size} values, the model takes {size}")
    return np.concatenate([v, np.zeros(size - v.size, np.float32)])


def _read_param_file(path: Path) -> dict | None:
    """A small parameter file as a dict (``.json`` object or ``.npz`` arrays); ``None`` for a capture ``.npz``."""
    src = str(path)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelFileError(src, None, f"is not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise ModelFileError(src, None, "must hold a JSON object")
        return data
    try:
        with np.load(path, allow_pickle=False) as z:
            is_capture = "version" in z.files and "pose_6d" in z.files and z["pose_6d"].ndim == 3
            return None if is_capture else {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ModelFileError(src, None, f"is not a readable .npz ({e})") from e


def read_pose_file(path: Path, frame: int, full: FullBodyModel) -> PoseParams:
    """Pose parameters from a capture ``.npz`` (one frame) or a small ``.npz``/``.json``."""
    src = str(path)
    if not path.exists():
        raise ModelFileError(src, None, "does not exist")
    ki, ke = full.face.sizes["identity"], full.face.sizes["expression"]
    data = _read_param_file(path)
    if data is None:
        cap = load_capture(path)
        if not 0 <= frame < cap.num_frames:
            raise ModelFileError(src, f"frame {frame}", f"is out of range (the capture has {cap.num_frames} frames)")
        data = {"pose_6d": cap["pose_6d"][frame], "betas": cap["betas"], "identity": cap["face_identity"],
                "expression": cap["face_expression"][frame]}
        src = f"{path} frame {frame}"
    if "pose_6d" not in data:
        raise ModelFileError(src, "pose_6d", "is missing")
    pose = np.asarray(data["pose_6d"], np.float32)
    if pose.size != NUM_JOINTS * 6:
        raise ModelFileError(src, "pose_6d", f"has shape {pose.shape}, expected ({NUM_JOINTS}, 6)")
    out = {"pose_6d": pose.reshape(NUM_JOINTS, 6), "betas": _vector(src, data, "betas", NUM_BETAS),
           "identity": _vector(src, data, "identity", ki), "expression": _vector(src, data, "expression", ke)}
    if not all(np.isfinite(v).all() for v in out.values()):
        raise ModelFileError(src, next(k for k, v in out.items() if not np.isfinite(v).all()), "has NaN/inf values")
    return out


def read_person_file(path: Path, full: FullBodyModel) -> dict[str, np.ndarray]:
    """``betas (16,)``, ``identity (Ki,)``, ``albedo (Ka,)`` and, when the file has one for this face
    model, ``albedo_detail (N, 3)`` (the captured colour detail, the capture's ``face_albedo_detail``)
    from a capture ``.npz`` or a small ``.npz``/``.json``."""
    src = str(path)
    if not path.exists():
        raise ModelFileError(src, None, "does not exist")
    data = _read_param_file(path)
    sizes = {"betas": NUM_BETAS, "identity": full.face.sizes["identity"], "albedo": full.face.sizes["albedo"]}
    if data is None:  # a capture: its coefficients are cut to the model's sizes, as the add-on does
        cap = load_capture(path)
        data = {k: np.asarray(cap[c], np.float32).reshape(-1)[: sizes[k]]
                for k, c in (("betas", "betas"), ("identity", "face_identity"), ("albedo", "face_albedo"))
                if c in cap.data}
        if cap["face_albedo_detail"].size:
            data["albedo_detail"] = cap["face_albedo_detail"]
    try:
        out = {k: _vector(src, data, k, n) for k, n in sizes.items()}
        if "albedo_detail" in data:
            d = np.asarray(data["albedo_detail"], np.float32).reshape(-1)
            if d.size != 3 * full.face.num_vertices:
                raise ModelFileError(src, "albedo_detail", f"has {d.size} values, the face model takes "
                                                           f"{3 * full.face.num_vertices} (3 per vertex)")
            out["albedo_detail"] = d.reshape(-1, 3)
    except (TypeError, ValueError) as e:
        raise ModelFileError(src, None, f"holds non-numeric coefficients ({e})") from e
    bad = [k for k, v in out.items() if not np.isfinite(v).all()]
    if bad:
        raise ModelFileError(src, bad[0], "has NaN/inf values")
    return out


def posed_vertices(full: FullBodyModel, params: PoseParams | None) -> np.ndarray:
    """Merged vertices ``(Vm, 3)`` for ``params`` (rest pose, mean shape if None)."""
    if params is None:
        return full.rest_vertices()
    rot = rot6d_to_matrix(params["pose_6d"].astype(np.float64))[None]
    v, _ = full.forward(params["betas"][None].astype(np.float64), rot, params["identity"][None].astype(np.float64),
                        params["expression"][None].astype(np.float64))
    return v[0].astype(np.float32)


def write_obj(path: Path, verts: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Wavefront OBJ: ``v x y z [r g b]`` lines (verts ``(V, 3)``, colours ``(V, 3)`` 0..1), 1-based ``f``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        fh.write(f"# fullbody-capture merged mesh: {len(verts)} vertices, {len(faces)} triangles\n")
        if colors is None:
            np.savetxt(fh, verts, fmt="v %.6f %.6f %.6f")
        else:
            np.savetxt(fh, np.concatenate([verts, colors], 1), fmt="v %.6f %.6f %.6f %.4f %.4f %.4f")
        np.savetxt(fh, faces.astype(np.int64) + 1, fmt="f %d %d %d")
    tmp.replace(path)


def bench_forward(full: FullBodyModel, batch: int, repeats: int = 10, threads: int = 0) -> dict:
    """Median wall time of the torch forward pass (float32, CPU) for ``batch`` random poses."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    rot = rot6d_to_matrix(torch.randn(batch, NUM_JOINTS, 6, generator=g))
    betas = torch.randn(batch, NUM_BETAS, generator=g)
    ident = torch.randn(batch, full.face.sizes["identity"], generator=g)
    expr = torch.randn(batch, full.face.sizes["expression"], generator=g)

    def timed(fn) -> float:
        with torch.inference_mode():
            fn()  # warm-up (builds the tensor caches)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    t_body = timed(lambda: full.body.forward(betas, rot))
    t_full = timed(lambda: full.forward(betas, rot, ident, expr))
    return {"batch": batch, "threads": torch.get_num_threads(), "body_lbs_ms": 1000 * t_body,
            "merged_forward_ms": 1000 * t_full, "merged_forward_us_per_pose": 1e6 * t_full / batch,
            "body_vertices": full.body.num_vertices, "merged_vertices": full.num_vertices}


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.bench:
        print("error: model export needs --out FILE.obj|FILE.npz and/or --bench B", file=sys.stderr)
        return EXIT_USAGE
    fmt = args.format or ("npz" if args.out and args.out.suffix.lower() == ".npz" else "obj")
    if args.out and fmt == "npz" and args.pose:
        print("error: --format npz writes the rest-pose avatar; --pose applies to OBJ only", file=sys.stderr)
        return EXIT_USAGE
    _, _, full = load_models(args)
    if args.bench:
        print(json.dumps(bench_forward(full, args.bench, threads=args.threads)))
    if args.out and fmt == "npz":
        person = read_person_file(args.person, full) if args.person else {}
        arrays = avatar_arrays(full, **person)
        write_avatar_file(args.out, arrays)
        print(f"wrote {args.out} ({full.num_vertices} vertices, {len(full.merged_faces)} triangles, "
              f"{len(arrays['expression_names'])} expressions)")
    elif args.out:
        params = read_pose_file(args.pose, args.frame, full) if args.pose else None
        verts = posed_vertices(full, params)
        write_obj(args.out, verts, full.merged_faces, full.vertex_colors())
        print(f"wrote {args.out} ({full.num_vertices} vertices, {len(full.merged_faces)} triangles)")
    return 0
