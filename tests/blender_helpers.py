"""Shared fixtures data for the Blender add-on tests (real bpy, real files).

``body_model()`` is the built-in body asset when this checkout has it, else a
small SMPL-H-structured :class:`BodyModel` built here from the real kinematic
tree (rings of vertices around each bone, weights blended between a joint and
its parent, joints regressed exactly from one vertex each).  ``write_capture``
writes a real capture file with :class:`CaptureWriter`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from model_runtime.core import rotations
from model_runtime.models.body_model import BUILTIN_BODY_PATH, BodyModel, load_builtin_body
from model_runtime.core.capture_file import CaptureWriter
from model_runtime.core.skeleton import JOINT_NAMES, NUM_BETAS, PARENTS

# Approximate SMPL-H T-pose offsets from the parent (model axes: Y up, faces +Z, left = +X).
_BODY_OFFSETS = {
    "pelvis": (0.0, 0.93, 0.0), "left_hip": (0.06, -0.09, 0.0), "right_hip": (-0.06, -0.09, 0.0),
    "spine1": (0.0, 0.11, -0.01), "left_knee": (0.04, -0.38, 0.0), "right_knee": (-0.04, -0.38, 0.0),
    "spine2": (0.0, 0.13, 0.0), "left_ankle": (-0.01, -0.40, -0.04), "right_ankle": (0.01, -0.40, -0.04),
    "spine3": (0.0, 0.05, 0.02), "left_foot": (0.02, -0.06, 0.12), "right_foot": (-0.02, -0.06, 0.12),
    "neck": (0.0, 0.21, -0.03), "left_collar": (0.07, 0.11, -0.01), "right_collar": (-0.07, 0.11, -0.01),
    "head": (0.0, 0.09, 0.05), "left_shoulder": (0.12, 0.04, -0.01), "right_shoulder": (-0.12, 0.04, -0.01),
    "left_elbow": (0.25, -0.01, -0.02), "right_elbow": (-0.25, -0.01, -0.02),
    "left_wrist": (0.25, 0.01, 0.0), "right_wrist": (-0.25, 0.01, 0.0),
}
_FINGER_OFFSETS = {
    "index": [(0.09, 0.0, 0.03), (0.035, 0.0, 0.0), (0.025, 0.0, 0.0)],
    "middle": [(0.095, 0.0, 0.01), (0.04, 0.0, 0.0), (0.027, 0.0, 0.0)],
    "pinky": [(0.08, 0.0, -0.03), (0.025, 0.0, 0.0), (0.018, 0.0, 0.0)],
    "ring": [(0.09, 0.0, -0.01), (0.035, 0.0, 0.0), (0.025, 0.0, 0.0)],
    "thumb": [(0.03, -0.01, 0.03), (0.03, 0.0, 0.02), (0.022, 0.0, 0.015)],
}
_RING = 6
_TS = (0.25, 0.5, 0.75)


def _rest_joints() -> np.ndarray:
    off = np.zeros((len(JOINT_NAMES), 3))
    for j, n in enumerate(JOINT_NAMES):
        if n in _BODY_OFFSETS:
            off[j] = _BODY_OFFSETS[n]
        else:
            side, rest = n.split("_", 1)
            o = np.array(_FINGER_OFFSETS[rest[:-1]][int(rest[-1]) - 1])
            off[j] = o * (1 if side == "left" else np.array([-1, 1, 1]))
    joints = off.copy()
    for j in range(1, len(JOINT_NAMES)):
        joints[j] = joints[PARENTS[j]] + off[j]
    return joints


def synthetic_body_model() -> BodyModel:
    """SMPL-H-structured body (V = 52 + 51 * 18 vertices); see the module doc."""
    J = len(JOINT_NAMES)
    joints = _rest_joints()
    angles = np.linspace(0, 2 * np.pi, _RING, endpoint=False)
    verts, weights, faces = [joints], [np.eye(J)], []
    n = J
    for j in range(1, J):
        p = PARENTS[j]
        a, b = joints[p], joints[j]
        axis = (b - a) / np.linalg.norm(b - a)
        u = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0])
        u /= np.linalg.norm(u)
        v = np.cross(axis, u)
        radius = 0.05 if j < 22 else 0.008
        for k, t in enumerate(_TS):
            c = a + t * (b - a)
            ring = c + radius * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
            w = np.zeros((_RING, J))
            w[:, j], w[:, p] = t, 1 - t
            verts.append(ring)
            weights.append(w)
            if k:
                i0, i1 = n + (k - 1) * _RING, n + k * _RING
                r = np.arange(_RING)
                faces += np.stack([i0 + r, i0 + (r + 1) % _RING, i1 + r], 1).tolist()
                faces += np.stack([i0 + (r + 1) % _RING, i1 + (r + 1) % _RING, i1 + r], 1).tolist()
        n += _RING * len(_TS)
    V = np.concatenate(verts)
    rng = np.random.default_rng(3)
    # smooth shape directions: per component, a random linear field of the rest position
    lin = rng.normal(scale=0.03, size=(NUM_BETAS, 3, 3))
    shapedirs = np.einsum("vc,kdc->vdk", V - V.mean(0), lin)
    Jreg = np.zeros((J, len(V)))
    Jreg[np.arange(J), np.arange(J)] = 1.0
    return BodyModel(kind="builtin", v_template=V.astype(np.float32), shapedirs=shapedirs.astype(np.float32),
                     J_regressor=Jreg.astype(np.float32), weights=np.concatenate(weights).astype(np.float32),
                     faces=np.asarray(faces, np.int32), source="<synthetic test body>")


def body_model() -> BodyModel:
    """The built-in body when present, else :func:`synthetic_body_model`."""
    return load_builtin_body() if Path(BUILTIN_BODY_PATH).exists() else synthetic_body_model()


def random_pose_6d(T: int, seed: int = 0, max_angle: float = 0.8) -> np.ndarray:
    """Smoothly varying random relative rotations ``(T, 52, 6)``; the root faces the camera."""
    rng = np.random.default_rng(seed)
    key = rng.normal(size=(4, 52, 3))
    t = np.linspace(0, 3, T)
    aa = np.stack([np.interp(t, np.arange(4), key[:, j, c]) for j in range(52) for c in range(3)], 1).reshape(T, 52, 3)
    aa *= max_angle / np.maximum(np.linalg.norm(aa, axis=-1, keepdims=True), 1.0)
    R = rotations.axis_angle_to_matrix(aa)
    R[:, 0] = np.diag([1.0, -1.0, -1.0]) @ R[:, 0]       # upright in the camera frame
    return rotations.matrix_to_rot6d(R).astype(np.float32)


def write_capture(path: Path, T: int = 30, seed: int = 0, expression_names=(), fps: float = 30.0,
                  scale: float = 1.0, finish: bool = True, chunk_frames: int = 64) -> Path:
    """A real capture file (or, with ``finish=False``, an unfinished ``.partial`` one)."""
    rng = np.random.default_rng(seed)
    E = len(expression_names)
    w = CaptureWriter(path, static=dict(
        fps=np.float32(fps), image_size=np.array([640, 480], np.int32),
        camera_K=np.array([[600, 0, 320], [0, 600, 240], [0, 0, 1]], np.float32),
        joint_names=np.array(JOINT_NAMES), betas=rng.normal(scale=0.5, size=NUM_BETAS).astype(np.float32),
        scale=np.float32(scale), keypoint_names=np.array(["pelvis"]),
        face_identity=np.zeros(8, np.float32), face_albedo=np.zeros(8, np.float32),
        expression_names=np.array(list(expression_names), dtype=str), body_model=np.array("builtin"),
        face_model=np.array("builtin")), chunk_frames=chunk_frames)
    pose = random_pose_6d(T, seed)
    transl = np.stack([0.3 * np.sin(np.linspace(0, 3, T)), 0.1 * np.cos(np.linspace(0, 2, T)),
                       np.linspace(2.5, 3.5, T)], 1).astype(np.float32)
    expr = rng.uniform(0, 1, size=(T, E)).astype(np.float32)
    for t in range(T):
        w.append(pose_6d=pose[t], transl=transl[t], valid=True, keypoints_2d=np.zeros((1, 3)),
                 keypoints_3d=np.zeros((1, 3)), face_expression=expr[t], face_sh=np.zeros(27))
    if finish:
        return w.close()
    w.flush()
    return path


def write_smplh_npz(path: Path, body: BodyModel) -> Path:
    """Save ``body`` in the official SMPL-H ``.npz`` layout (zero pose correctives), for the
    'SMPL-H file' body-model option."""
    V = body.num_vertices
    kt = np.stack([body.parents, np.arange(len(body.parents))]).astype(np.int64)
    np.savez(path, v_template=body.v_template, shapedirs=body.shapedirs, posedirs=np.zeros((V, 3, 459), np.float32),
             J_regressor=body.J_regressor, weights=body.weights, kintree_table=kt, f=body.faces)
    return path


def add_test_expressions(data, names) -> None:
    """Give an avatar (``AvatarData``) one smooth shape key per name, for bodies without a face."""
    rng = np.random.default_rng(7)
    E = len(names)
    lin = rng.normal(scale=0.05, size=(E, 3, 3))
    data.shape_key_names = tuple(names)
    data.shape_key_deltas = np.einsum("vc,edc->evd", data.vertices - data.vertices.mean(0), lin).astype(np.float32)
