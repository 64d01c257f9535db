"""Linear blend skinning as pure functions (paper Eq. 1-2; SMPL/SMPL-H maths).

All functions take arrays and return arrays: torch tensors (batched, CPU or
CUDA, float32/64, differentiable) or numpy arrays (Blender-side checks).  The
model data lives in :class:`model_runtime.models.body_model.BodyModel`; nothing here
holds state.

Shapes: ``B`` batch, ``V`` vertices, ``J`` joints (52), ``K`` shape
coefficients (16), ``P = 9 * (J - 1)`` pose-corrective features.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from . import backend as Bk
from .skeleton import depth_levels


def shape_blend(v_template, shapedirs, betas):
    """Rest vertices for a shape (Eq. 1).

    v_template: ``(V, 3)``; shapedirs: ``(V, 3, K)``; betas: ``(B, K')`` with
    ``K' <= K`` (missing coefficients are zero).  Returns ``(B, V, 3)``.
    """
    k = betas.shape[-1]
    return v_template[None] + Bk.einsum("bk,vck->bvc", betas, shapedirs[..., :k])


def regress_joints(J_regressor, vertices):
    """Joint locations ``(B, J, 3)`` from ``J_regressor (J, V)`` and ``vertices (B, V, 3)``."""
    return Bk.einsum("jv,bvc->bjc", J_regressor, vertices)


def shaped_joints(J_regressor, v_template, shapedirs, betas):
    """Rest joints ``(B, J, 3)`` of the shape ``betas (B, K')``: the same as
    ``regress_joints(J_regressor, shape_blend(v_template, shapedirs, betas))``
    but regressing the template ``(V, 3)`` and the basis ``(V, 3, K)`` first
    (both linear), so the cost per pose is ``J x K`` instead of ``J x V``."""
    k = betas.shape[-1]
    j_template = J_regressor @ v_template                                     # (J, 3)
    j_dirs = Bk.einsum("jv,vck->jck", J_regressor, shapedirs[..., :k])        # (J, 3, K')
    return j_template[None] + Bk.einsum("bk,jck->bjc", betas, j_dirs)


@lru_cache(maxsize=8)
def _levels(parents_key: tuple[int, ...]) -> list[np.ndarray]:
    return depth_levels(np.asarray(parents_key))


def forward_kinematics(rot_mats, joints, parents):
    """Compose relative rotations along the tree.

    rot_mats: ``(B, J, 3, 3)`` rotation of each joint relative to its parent
    (the root's is global); joints: ``(B, J, 3)`` rest joint positions;
    parents: ``(J,)`` ints, ``-1`` for the root, topologically sorted.

    Returns ``(posed_joints (B, J, 3), transforms (B, J, 4, 4))`` where
    ``transforms[:, j]`` maps a rest-pose point skinned to joint j to its
    posed location (the rest joint offset already removed, as LBS needs).
    The loop runs over tree *levels*, each level vectorised over its joints.
    """
    parents_np = np.array(parents, dtype=np.int64)
    rel = joints.clone() if Bk.is_torch(joints) else joints.copy()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents_np[1:]]
    # global rotation and translation per joint
    levels = _levels(tuple(int(p) for p in parents_np))
    G_R = Bk.zeros_like(rot_mats)
    G_t = Bk.zeros_like(joints)
    G_R = _assign(G_R, levels[0], rot_mats[:, levels[0]])
    G_t = _assign(G_t, levels[0], rel[:, levels[0]])
    for lvl in levels[1:]:
        par = parents_np[lvl]
        PR = G_R[:, par]
        G_R = _assign(G_R, lvl, PR @ rot_mats[:, lvl])
        G_t = _assign(G_t, lvl, G_t[:, par] + (PR @ rel[:, lvl, :, None])[..., 0])
    posed = G_t
    # remove rest offset: T = [G_R, G_t - G_R @ j_rest]
    t = G_t - (G_R @ joints[..., None])[..., 0]
    top = Bk.cat([G_R, t[..., None]], axis=-1)  # (B, J, 3, 4)
    bottom = Bk.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return posed, Bk.cat([top, bottom], axis=-2)


def _assign(arr, idx, val):
    """``arr[:, idx] = val`` that stays differentiable for torch (out-of-place)."""
    if Bk.is_torch(arr):
        arr = arr.clone()
    arr[:, idx] = val
    return arr


def pose_features(rot_mats):
    """Pose-corrective features ``(B, 9*(J-1))``: ``R - I`` of every non-root joint."""
    Bsz, J = rot_mats.shape[:2]
    eye = Bk.eye_like(rot_mats, 3)
    return (rot_mats[:, 1:] - eye).reshape(Bsz, (J - 1) * 9)


def skin(vertices, weights, transforms):
    """Apply LBS (Eq. 2): ``v' = sum_j w[v, j] (R_j v + t_j)``.

    vertices: ``(B, V, 3)`` rest (shaped, pose-corrected) vertices; weights:
    ``(V, J)``; transforms: ``(B, J, 4, 4)`` from :func:`forward_kinematics`.
    Returns ``(B, V, 3)`` (for torch a transposed view of a ``(B, 3, V)`` result).

    The blend is one batched GEMM laid out "planar": the transforms as
    ``(B, 12, J)`` times ``weights.T (J, V)`` give the blended ``3 x 4`` matrix
    entries as ``(B, 12, V)``, so BLAS sees a large, unit-stride product and
    the per-vertex matrix-vector step becomes four multiply-adds over
    contiguous ``(B, 3, V)`` planes (no batched ``3 x 3`` matmuls, which are
    slow for B*V tiny matrices).  Same result as the dense
    ``einsum("vj,bjmn->bvmn")`` up to float rounding.
    """
    Bsz, V = vertices.shape[:2]
    J = weights.shape[-1]
    A = Bk.swapaxes_last2(transforms[..., :3, :].reshape(Bsz, J, 12))          # (B, 12, J)
    T = (A @ Bk.swapaxes_last2(weights)).reshape(Bsz, 3, 4, V)                  # (B, 3, 4, V): T[b, m, n, v]
    x = Bk.swapaxes_last2(vertices)[:, None]                                     # (B, 1, 3, V)
    if Bk.is_torch(T):
        import torch

        out = torch.addcmul(T[:, :, 3], T[:, :, 0], x[:, :, 0])                 # (B, 3, V)
        out = out.addcmul_(T[:, :, 1], x[:, :, 1]).addcmul_(T[:, :, 2], x[:, :, 2])
    else:
        out = T[:, :, 3] + T[:, :, 0] * x[:, :, 0] + T[:, :, 1] * x[:, :, 1] + T[:, :, 2] * x[:, :, 2]
    return Bk.swapaxes_last2(out)


def lbs(betas, rot_mats, v_template, shapedirs, J_regressor, weights, parents, posedirs=None,
        transl=None, scale=None):
    """Full forward pass: shape -> joints -> pose correctives -> skinning.

    betas: ``(B, K)``; rot_mats: ``(B, J, 3, 3)`` relative rotations;
    v_template ``(V, 3)``; shapedirs ``(V, 3, K)``; J_regressor ``(J, V)``;
    weights ``(V, J)``; parents ``(J,)``; posedirs ``(P, V*3)`` or None;
    transl ``(B, 3)`` or None; scale ``(B,)`` or None: uniform scale alpha
    about the origin (the root's rest position sits near the origin).

    Returns ``(vertices (B, V, 3), joints (B, J, 3), transforms (B, J, 4, 4))``.
    """
    v_shaped = shape_blend(v_template, shapedirs, betas)
    j_rest = shaped_joints(J_regressor, v_template, shapedirs, betas)
    if posedirs is not None:
        Bsz, V = v_shaped.shape[:2]
        v_shaped = v_shaped + (pose_features(rot_mats) @ posedirs).reshape(Bsz, V, 3)
    joints, T = forward_kinematics(rot_mats, j_rest, parents)
    verts = skin(v_shaped, weights, T)
    if scale is not None:
        verts = verts * scale[:, None, None]
        joints = joints * scale[:, None, None]
    if transl is not None:
        verts = verts + transl[:, None, :]
        joints = joints + transl[:, None, :]
    return verts, joints, T
