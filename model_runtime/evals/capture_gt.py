"""``eval capture-gt``: score a capture file against a ground-truth capture of the same clip.

Both files are posed with the body model (numpy LBS) and compared per frame on
the 22 SMPL-H body joints in the camera frame:

* ``mpjpe_mm``: after aligning the pelvis (root-relative, as usual);
* ``pa_mpjpe_mm``: after a per-frame similarity (Procrustes) alignment;
* ``root_error_mm``: absolute pelvis position error (tests Eq. 14 translation);
* ``rotation_error_deg``: mean geodesic angle of the relative body rotations
  (root excluded), so it measures joint angles, not global orientation;
* ``valid_rate``: fraction of frames the capture marks valid.

Frames are matched by index; the shorter file decides the count.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from ..models.load import load_body_model
from ..core.capture_file import load_capture
from ..core.rotations import geodesic_angle, rot6d_to_matrix
from .common import mpjpe, procrustes_align


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("capture", help="capture .npz to score")
    p.add_argument("--gt", required=True, help="ground-truth capture .npz of the same clip")
    p.add_argument("--body-model", default="builtin", help="body model both were made with")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _pose(body, cap, T):
    rot = rot6d_to_matrix(cap["pose_6d"][:T].astype(np.float64))
    betas = np.broadcast_to(cap["betas"].astype(np.float64), (T, cap["betas"].shape[-1]))
    scale = np.full(T, float(cap["scale"]))
    _, joints, _ = body.forward(betas, rot, transl=cap["transl"][:T].astype(np.float64), scale=scale)
    return joints[:, :22], rot[:, 1:22]


def score(capture_path, gt_path, body_model: str = "builtin") -> dict:
    body = load_body_model(body_model)
    cap, gt = load_capture(capture_path), load_capture(gt_path)
    T = min(cap.num_frames, gt.num_frames)
    jc, rc = _pose(body, cap, T)
    jg, rg = _pose(body, gt, T)
    rel_c, rel_g = jc - jc[:, :1], jg - jg[:, :1]
    err = mpjpe(rel_c, rel_g)
    pa = mpjpe(procrustes_align(rel_c, rel_g), rel_g)
    root = np.linalg.norm(jc[:, 0] - jg[:, 0], axis=-1)
    rot_err = np.degrees(geodesic_angle(rc, rg)).mean(-1)
    valid = cap["valid"][:T].astype(bool)
    return {
        "frames": int(T),
        "valid_rate": float(valid.mean()) if T else 0.0,
        "mpjpe_mm": float(err.mean() * 1000),
        "pa_mpjpe_mm": float(pa.mean() * 1000),
        "root_error_mm": float(np.median(root) * 1000),
        "rotation_error_deg": float(rot_err.mean()),
    }


def run(args) -> int:
    res = score(args.capture, args.gt, args.body_model)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>20}: {v:.3f}" if isinstance(v, float) else f"{k:>20}: {v}")
    return 0
