"""Replay a capture made without the feet stage (``--no-feet``, or an older file) through
``capture/feet_stage.FootStage`` and write the result as a capture file: the feet stage's effect alone,
on exactly the same motion, in seconds instead of a re-capture (how its settings were compared,
docs/fidelity.md "Feet").

    .venv/bin/python tools/replay_feet.py IN.npz OUT.npz [--live] [--set NAME=VALUE ...] [--repeat N] [--batches N,...]

Prints the stage's CPU time per frame (``time.thread_time`` around ``push``/``flush``; the best
of ``--repeat`` runs, each on fresh records): what the feet stage costs inside a capture.

``--set`` overrides a module constant of ``capture/feet.py`` for the run (e.g. ``ON_SPEED=0.2``).
``--batches`` gives the records per ``push`` (default 8): the first ground-plane fit, and the labels
made under it, come at the first push with enough still feet, so a replay is the capture's result
only with the capture's batches (those of the image-aligned fit: its first window, then 4 at a
time; ``--batches 29,4`` reproduces the courtyard capture, ``26,4`` tennis, ``1,29,4`` openpose).
The records are rebuilt from the file (rotations, translation, detections, visibility, joint
confidence), so the stage sees what it sees inside a capture but for the per-frame timing.
"""
from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime.capture import feet  # noqa: E402
from model_runtime.capture.feet_stage import FootStage  # noqa: E402
from model_runtime.core.capture_file import load_capture  # noqa: E402
from model_runtime.core.lbs import forward_kinematics  # noqa: E402
from model_runtime.core.rotations import matrix_to_quat_wxyz, matrix_to_rot6d, quat_wxyz_to_matrix, rot6d_to_matrix  # noqa: E402
from model_runtime.models.load import load_body_model  # noqa: E402


def _batches(sizes: list[int], T: int):
    """Push sizes covering ``T`` records: ``sizes`` in order, then its last one repeated."""
    i, k = 0, 0
    while i < T:
        n = min(sizes[min(k, len(sizes) - 1)], T - i)
        yield n
        i, k = i + n, k + 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("capture")
    p.add_argument("out")
    p.add_argument("--live", action="store_true", help="the live (causal) stage")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--repeat", type=int, default=1, help="runs timed (the best is printed)")
    p.add_argument("--batches", default="8", metavar="N[,N...]",
                   help="records per push: one size, or the sizes a capture pushed (the last repeated; "
                        "the first ground-plane fit and the labels made under it depend on them)")
    args = p.parse_args(argv)
    for kv in args.set:
        name, value = kv.split("=", 1)
        if not hasattr(feet, name):
            sys.exit(f"--set {kv}: capture/feet.py has no {name}")
        kind = type(getattr(feet, name))
        setattr(feet, name, value.lower() in ("1", "true", "yes") if kind is bool else kind(value))
    try:
        sizes = [int(n) for n in args.batches.split(",")]
        assert sizes and min(sizes) > 0
    except (ValueError, AssertionError):
        sys.exit(f"--batches {args.batches}: expected positive integers separated by commas")
    cap = load_capture(args.capture)
    d = dict(cap.data)
    body = load_body_model(str(d["body_model"]))
    T = len(d["valid"])
    betas, scale = d["betas"].astype(np.float64), float(d["scale"])
    rot = rot6d_to_matrix(d["pose_6d"].astype(np.float64))
    rest = np.broadcast_to(body.rest_joints(betas) * scale, (T, 52, 3)).copy()
    J, _ = forward_kinematics(rot, rest, body.parents)
    K = d["camera_K"].astype(np.float64)
    best = np.inf
    for _ in range(max(1, args.repeat)):
        recs = [types.SimpleNamespace(
            index=t, valid=bool(d["valid"][t]), joints=J[t] if d["valid"][t] else None,
            transl=d["transl"][t].astype(np.float64), quat=matrix_to_quat_wxyz(rot[t]),
            body_2d=d["keypoints_2d"][t, :24].astype(np.float64), keypoint_visibility=d["keypoint_visibility"][t],
            joint_confidence=d["joint_confidence"][t], betas=betas, scale=scale) for t in range(T)]
        stage = FootStage(body.rest_joints, body.parents, lambda: K, float(d["fps"]),
                               feet.default_ankle_height(body), lookahead=not args.live)
        out = []
        t0 = time.thread_time()
        i = 0
        for n in _batches(sizes, T):
            out += stage.push(recs[i:i + n])
            i += n
        out += stage.flush()
        best = min(best, time.thread_time() - t0)
    assert [r.index for r in out] == list(range(T))
    d["pose_6d"] = matrix_to_rot6d(quat_wxyz_to_matrix(np.stack([r.quat for r in out]))).astype(np.float32)
    d["transl"] = np.stack([r.transl for r in out]).astype(np.float32)
    d["foot_contact"] = np.stack([r.foot_contact for r in out])
    d["ground_plane"] = stage.ground_plane if stage.ground_plane is not None else np.zeros(4, np.float32)
    np.savez(args.out, **d)
    print(f"feet stage: {1000 * best / T:.2f} ms/frame CPU ({T} frames, best of {max(1, args.repeat)})")
    print(f"wrote {args.out}: contact {d['foot_contact'].mean(0).round(3).tolist()}, ground plane "
          f"{np.round(d['ground_plane'], 3).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
