"""The SMPL-H kinematic tree: joint names, parents and index groups.

Official SMPL-H order (52 joints): 22 body joints, then 15 left-hand joints,
then the same 15 for the right hand.  Both the built-in model and an official
SMPL-H file use exactly this order and these parents, so a rotation vector
means the same thing on either.
"""
from __future__ import annotations

from typing import Final, Literal

import numpy as np

BODY_JOINT_NAMES: Final[tuple[str, ...]] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
_FINGERS: Final[tuple[str, ...]] = ("index", "middle", "pinky", "ring", "thumb")
HAND_JOINT_SUFFIXES: Final[tuple[str, ...]] = tuple(f"{f}{i}" for f in _FINGERS for i in (1, 2, 3))
LEFT_HAND_JOINT_NAMES: Final[tuple[str, ...]] = tuple(f"left_{s}" for s in HAND_JOINT_SUFFIXES)
RIGHT_HAND_JOINT_NAMES: Final[tuple[str, ...]] = tuple(f"right_{s}" for s in HAND_JOINT_SUFFIXES)
JOINT_NAMES: Final[tuple[str, ...]] = BODY_JOINT_NAMES + LEFT_HAND_JOINT_NAMES + RIGHT_HAND_JOINT_NAMES

NUM_JOINTS: Final[int] = 52
NUM_BODY_JOINTS: Final[int] = 22
NUM_HAND_JOINTS: Final[int] = 15
NUM_BETAS: Final[int] = 16

_BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19]


def _hand_parents(wrist: int, first: int) -> list[int]:
    out = []
    for f in range(5):
        base = first + 3 * f
        out += [wrist, base, base + 1]
    return out


PARENTS: Final[np.ndarray] = np.array(
    _BODY_PARENTS + _hand_parents(20, 22) + _hand_parents(21, 37), dtype=np.int64
)
PARENTS.setflags(write=False)

BODY_IDX: Final[np.ndarray] = np.arange(0, 22)
RIGHT_HAND_IDX: Final[np.ndarray] = np.arange(37, 52)
HEAD_JOINT: Final[int] = JOINT_NAMES.index("head")
RIGHT_WRIST: Final[int] = JOINT_NAMES.index("right_wrist")

Side = Literal["left", "right"]


def depth_levels(parents: np.ndarray) -> list[np.ndarray]:
    """Group joint indices by tree depth (root = level 0).

    Forward kinematics loops over *levels* (at most ~10 for SMPL-H with
    fingers), never over joints: all joints of a level are composed at once.
    Assumes ``parents[j] < j`` for every non-root joint (true for SMPL-H).
    """
    parents = np.asarray(parents)
    depth = np.zeros(len(parents), dtype=np.int64)
    for j in range(1, len(parents)):
        assert parents[j] < j, "parents must be topologically sorted"
        depth[j] = depth[parents[j]] + 1
    return [np.nonzero(depth == d)[0] for d in range(depth.max() + 1)]


# MANO fingertip vertices are not joints; 21-keypoint hands add the tips.
# Order of 21 hand keypoints used by MediaPipe / hand-graph-cnn / FreiHAND:
# wrist, thumb1..4, index1..4, middle1..4, ring1..4, pinky1..4 (base -> tip).
HAND21_NAMES: Final[tuple[str, ...]] = ("wrist",) + tuple(
    f"{f}{i}" for f in ("thumb", "index", "middle", "ring", "pinky") for i in (1, 2, 3, 4)
)


# --- Keypoint sets shared by the detector, the IK networks and the evaluations ---
# Body keypoints given to BodyIKNet (paper: basic + extended).  "Basic" ones are
# SMPL-H joints; "extended" ones are mesh vertices (ids per body model in
# BodyModel.extras["keypoint_vertices"], a dict name -> vertex index).
BODY_KEYPOINTS_BASIC: Final[tuple[str, ...]] = (
    "pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "neck", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
)
BODY_KEYPOINTS_EXTENDED: Final[tuple[str, ...]] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_heel", "right_heel", "left_big_toe", "right_big_toe",
)
BODY_KEYPOINT_NAMES: Final[tuple[str, ...]] = BODY_KEYPOINTS_BASIC + BODY_KEYPOINTS_EXTENDED
# Hand keypoints given to HandIKNet: HAND21_NAMES (wrist + 4 per finger, base -> tip).
# Joints map to SMPL-H hand joints (finger1..3), the tips ("*4") are vertices
# with ids in BodyModel.extras["keypoint_vertices"] under "left_thumb4", "right_index4", ...
