"""Knees and wrists of a capture: are unseen legs standing, and is an arm in front of the face?

    python tools/knee_flexion.py CAPTURE.npz [CAPTURE.npz ...] [--json]

Per capture, over all frames (gap-filled ones included):

* ``knee_straight``: the fraction of frames whose two knees both bend less than 35 degrees
  (flexion = the angle of the knee joint's rotation relative to the hip, from ``pose_6d``);
  ``knee_mean_deg``: the mean flexion of both knees;
* ``wrist_front_of_face``: the fraction of frames with a wrist in front of the face: the wrist
  joint projected (``camera_K``) inside the face box (a square of half-size
  :data:`FACE_HALF_SIZE_M` at the head joint's depth, around the head joint's projection) and
  nearer to the camera than the head joint by more than :data:`NEARER_M`, or less than
  :data:`AT_CAMERA_M` from the camera plane;
* ``valid``: the fraction of valid frames; ``legs_unseen``: the fraction of frames whose knees are
  both unseen (``joint_confidence`` 0) on a valid frame (a version-1 file counts them seen).

The posed joints are ``scale * FK(rest joints of betas, pose_6d) + transl`` with the capture's
body model, as the capture pipeline poses them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Final

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime.core import rotations  # noqa: E402
from model_runtime.core.capture_file import Capture, load_capture  # noqa: E402
from model_runtime.core.lbs import forward_kinematics  # noqa: E402
from model_runtime.core.skeleton import JOINT_NAMES  # noqa: E402

STRAIGHT_DEG: Final[float] = 35.0
FACE_HALF_SIZE_M: Final[float] = 0.15
NEARER_M: Final[float] = 0.05
AT_CAMERA_M: Final[float] = 0.10
KNEES: Final[list[int]] = [JOINT_NAMES.index("left_knee"), JOINT_NAMES.index("right_knee")]
WRISTS: Final[list[int]] = [JOINT_NAMES.index("left_wrist"), JOINT_NAMES.index("right_wrist")]
HEAD: Final[int] = JOINT_NAMES.index("head")


def knee_flexion_deg(pose_6d: np.ndarray) -> np.ndarray:
    """``(T, 2)`` degrees [left, right]: the angle of each knee's relative rotation."""
    return np.degrees(rotations.geodesic_angle(rotations.rot6d_to_matrix(pose_6d[:, KNEES].astype(np.float64)),
                                               np.eye(3)))


def posed_joints(cap: Capture) -> np.ndarray:
    """``(T, 52, 3)`` joints in the camera frame (metres)."""
    from model_runtime.models.load import load_body_model

    body = load_body_model(str(cap["body_model"]))
    T = cap.num_frames
    rot = rotations.rot6d_to_matrix(cap["pose_6d"].astype(np.float64))
    rest = np.broadcast_to(body.rest_joints(cap["betas"].astype(np.float64)), (T, len(JOINT_NAMES), 3))
    joints, _ = forward_kinematics(rot, np.ascontiguousarray(rest), body.parents)
    return float(cap["scale"]) * joints + cap["transl"].astype(np.float64)[:, None]


def wrist_in_front_of_face(joints: np.ndarray, K: np.ndarray) -> np.ndarray:
    """``(T,)`` bool: a wrist in front of the face (module docstring)."""
    head, wrists = joints[:, HEAD], joints[:, WRISTS]                            # (T, 3), (T, 2, 3)
    z_head = np.maximum(head[:, 2], 1e-6)
    uv_head = (head[:, :2] / z_head[:, None]) * np.diag(K)[:2] + K[:2, 2]
    z_w = wrists[..., 2]
    uv_w = (wrists[..., :2] / np.where(np.abs(z_w) > 1e-6, z_w, 1e-6)[..., None]) * np.diag(K)[:2] + K[:2, 2]
    half = K[0, 0] * FACE_HALF_SIZE_M / z_head                                  # (T,) px
    inside = (np.abs(uv_w - uv_head[:, None]) <= half[:, None, None]).all(-1) & (z_w > 0)
    nearer = z_w < z_head[:, None] - NEARER_M
    return ((inside & nearer) | (z_w < AT_CAMERA_M)).any(-1)


def measure(path: Path) -> dict:
    cap = load_capture(path)
    knees = knee_flexion_deg(cap["pose_6d"])
    front = wrist_in_front_of_face(posed_joints(cap), cap["camera_K"].astype(np.float64))
    return {
        "frames": cap.num_frames,
        "valid": float(cap["valid"].mean()),
        "knee_straight": float((knees.max(1) < STRAIGHT_DEG).mean()),
        "knee_mean_deg": float(knees.mean()),
        "wrist_front_of_face": float(front.mean()),
        "legs_unseen": float(((cap["joint_confidence"][:, KNEES] == 0).all(1) & cap["valid"]).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("captures", type=Path, nargs="+")
    p.add_argument("--json", action="store_true", help="one JSON object per capture")
    args = p.parse_args(argv)
    for path in args.captures:
        m = measure(path)
        if args.json:
            print(json.dumps({"capture": str(path), **m}))
            continue
        print(f"{path}: {m['frames']} frames, valid {m['valid']:.3f}, knee flexion < {STRAIGHT_DEG:g} deg "
              f"{m['knee_straight']:.3f} (mean {m['knee_mean_deg']:.1f} deg), wrist in front of the face "
              f"{m['wrist_front_of_face']:.3f}, legs unseen {m['legs_unseen']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
