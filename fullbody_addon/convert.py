"""Capture arrays -> Blender pose-bone channels (pure numpy, vectorised, no bpy).

Notation (shapes in brackets, ``T`` frames, ``J = 52`` joints):

* ``R_j`` [T, J, 3, 3]: ``pose_6d`` as matrices; joint j relative to its parent
  in model axes, the root's maps the model rest frame into the camera frame;
* ``A = axes.MODEL_TO_BLENDER``, ``W = axes.CAMERA_TO_BLENDER``;
* ``B_j`` [J, 3, 3], ``h_j`` [J, 3]: rotation and head of bone j's rest matrix in
  armature space (``bone.matrix_local``), read from Blender so the conversion is
  exact for whatever head/tail/roll the bones have;
* ``J_r`` [3]: rest position of the root joint in model axes; ``s``: the
  capture's uniform scale, carried by the armature object's scale.

Blender composes ``M_j = M_p (Rest_p^-1 Rest_j) L_j`` (``L_j`` the pose bone's
local loc/rot).  Requiring the armature deformation ``M_j Rest_j^-1`` to equal the
model's LBS transform re-expressed in Blender axes gives (derivation in
docs/blender_extension.md):

* non-root: ``L_j = B_j^T (A R_j A^T) B_j`` (no translation: the joint head is fixed);
* root: rotation ``B_r^T (W R_r A^T) B_r`` and location
  ``B_r^T (W (J_r + t / s) - h_r)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import axes
from ._runtime import rotations


@dataclass(frozen=True)
class BoneChannels:
    """Per-frame pose-bone channels.

    quaternions ``(T, J, 4)`` WXYZ, sign-continuous over time;
    root_location ``(T, 3)`` in the root bone's local frame (armature units).
    """

    quaternions: np.ndarray
    root_location: np.ndarray


def local_rotations(pose_6d: np.ndarray, bone_rest: np.ndarray) -> np.ndarray:
    """Bone-local rotation matrices ``(T, J, 3, 3)``.

    pose_6d ``(T, J, 6)``; bone_rest ``(J, 3, 3)`` armature-space rest
    rotations (``bone.matrix_local.to_3x3()``), joint order of ``pose_6d``.
    """
    R = rotations.rot6d_to_matrix(np.asarray(pose_6d, np.float64))            # (T, J, 3, 3)
    R_b = axes.model_rotation_to_blender(R)                                    # A R A^T
    R_b[:, 0] = axes.root_rotation_to_blender(R[:, 0])                         # root: W R A^T
    Bm = np.asarray(bone_rest, np.float64)
    return np.swapaxes(Bm, -1, -2)[None] @ R_b @ Bm[None]


def root_locations(transl: np.ndarray, root_rest_joint: np.ndarray, root_head: np.ndarray,
                   root_rest: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Root bone location ``(T, 3)`` in its local frame.

    transl ``(T, 3)`` camera axes (metres); root_rest_joint ``(3,)`` model axes;
    root_head ``(3,)`` armature space; root_rest ``(3, 3)``; ``scale`` = capture
    scale (the armature object is scaled by it, so locations are divided by it).
    """
    world = axes.camera_points_to_blender(np.asarray(root_rest_joint, np.float64)[None]
                                          + np.asarray(transl, np.float64) / float(scale))
    return (world - np.asarray(root_head, np.float64)) @ np.asarray(root_rest, np.float64)


def bone_channels(pose_6d: np.ndarray, transl: np.ndarray, bone_rest: np.ndarray, root_head: np.ndarray,
                  root_rest_joint: np.ndarray, scale: float = 1.0, root_translation: bool = True) -> BoneChannels:
    """Everything :func:`local_rotations` and :func:`root_locations` give, as keyable channels.

    With ``root_translation=False`` the root stays at its rest location
    (in-place animation) but keeps its rotation.
    """
    Rl = local_rotations(pose_6d, bone_rest)
    q = rotations.matrix_to_quat_wxyz(Rl)
    if q.shape[0] > 1:  # rotations.quat_continuity returns an empty array for a single frame
        q = rotations.quat_continuity(q, axis=0)
    T = q.shape[0]
    if root_translation:
        loc = root_locations(transl, root_rest_joint, root_head, bone_rest[0], scale)
    else:
        loc = np.zeros((T, 3))
    return BoneChannels(quaternions=q, root_location=loc)
