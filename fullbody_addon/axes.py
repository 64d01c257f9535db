"""The ONE place where axes change (numpy only, no bpy).

Three frames meet in the add-on:

* **model** (body/face models, ``pose_6d`` of non-root joints): metres, Y up, the
  character faces +Z, rest T-pose;
* **camera** (capture files: the root rotation and ``transl``): x right,
  y down, z forward (OpenCV);
* **Blender** (armature space / world): Z up; a character faces -Y (Blender's
  "front" view looks along +Y).

Matrices act on column vectors (``x_to = M @ x_from``) and are proper rotations:

``MODEL_TO_BLENDER`` (the avatar's rest pose)::

    x_b =  x_m          [[1, 0,  0],
    y_b = -z_m     =     [0, 0, -1],
    z_b =  y_m           [0, 1,  0]]

``CAMERA_TO_BLENDER`` (the captured world; the camera sits at the origin looking
along Blender +Y, so a person standing in front of it is upright)::

    x_b =  x_c          [[1, 0,  0],
    y_b =  z_c     =     [0, 0,  1],
    z_b = -y_c           [0, -1, 0]]

A person facing the camera has root rotation ``diag(1, -1, -1)`` (model Y up ->
camera -y, model +Z -> camera -z); then ``CAMERA_TO_BLENDER @ R_root @
MODEL_TO_BLENDER.T`` is the identity: the captured rest pose equals the avatar's
rest pose, facing -Y towards the camera.
"""
from __future__ import annotations

from typing import Final

import numpy as np

MODEL_TO_BLENDER: Final[np.ndarray] = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
CAMERA_TO_BLENDER: Final[np.ndarray] = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
MODEL_TO_BLENDER.setflags(write=False)
CAMERA_TO_BLENDER.setflags(write=False)


def model_points_to_blender(p: np.ndarray) -> np.ndarray:
    """Points/vectors ``(..., 3)`` in model axes -> Blender axes (same shape)."""
    return np.asarray(p) @ MODEL_TO_BLENDER.T


def camera_points_to_blender(p: np.ndarray) -> np.ndarray:
    """Points/vectors ``(..., 3)`` in camera axes -> Blender world axes (same shape)."""
    return np.asarray(p) @ CAMERA_TO_BLENDER.T


def model_rotation_to_blender(R: np.ndarray) -> np.ndarray:
    """A rotation ``(..., 3, 3)`` acting in model axes, re-expressed in Blender axes."""
    return MODEL_TO_BLENDER @ np.asarray(R) @ MODEL_TO_BLENDER.T


def root_rotation_to_blender(R_root: np.ndarray) -> np.ndarray:
    """Root rotation ``(..., 3, 3)`` (model rest -> camera) as a rotation of the
    Blender-axes rest pose into Blender world: ``C @ R_root @ A.T``."""
    return CAMERA_TO_BLENDER @ np.asarray(R_root) @ MODEL_TO_BLENDER.T


# --- FBX export presets: (axis_forward, axis_up, global_scale, apply_scale_options) ---
# Blender's exporter maps its -Y forward / Z up to the target's axes.  Unity and
# Unreal both import FBX as Y-up (Unreal converts to Z-up itself), centimetre
# units in Unreal are handled by FBX_SCALE_UNITS.
FBX_PRESETS: Final[dict[str, dict]] = {
    "BLENDER": {"axis_forward": "-Y", "axis_up": "Z", "global_scale": 1.0, "apply_scale_options": "FBX_SCALE_NONE",
                "bake_space_transform": False},
    "UNITY": {"axis_forward": "-Z", "axis_up": "Y", "global_scale": 1.0, "apply_scale_options": "FBX_SCALE_UNITS",
              "bake_space_transform": True},
    "UNREAL": {"axis_forward": "-Y", "axis_up": "Z", "global_scale": 1.0, "apply_scale_options": "FBX_SCALE_UNITS",
               "bake_space_transform": False},
}
