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

from . import backend
from .skeleton import depth_levels


def shape_blend(template, dirs, betas):
    """Linear shape blend (Eq. 1): ``template + dirs . betas``, for vertices or joints.

    template: ``(N, 3)``; dirs: ``(N, 3, K)``; betas: ``(B, K')`` with ``K' <= K`` (missing
    coefficients are zero).  Returns ``(B, N, 3)``.  One matrix product
    ``(B, K') x (K', 3N)`` (cheap at batch 1 in numpy, where an einsum costs tens of us).
    """
    k = betas.shape[-1]
    n = template.shape[0]
    return template[None] + (betas @ dirs[..., :k].reshape(3 * n, k).T).reshape(-1, n, 3)


def regress_joints(J_regressor, vertices):
    """Joint locations ``(B, J, 3)`` from ``J_regressor (J, V)`` and ``vertices (B, V, 3)``."""
    return backend.einsum("jv,bvc->bjc", J_regressor, vertices)


def joint_shape_basis(J_regressor, v_template, shapedirs):
    """Rest joints are linear in beta: ``J(beta) = j_template + j_dirs . beta``.

    Regresses the template ``(V, 3)`` and the basis ``(V, 3, K)`` once (both linear), so
    that the rest joints of a shape cost ``J x K`` (:func:`shape_blend` of the result)
    instead of ``J x V``.  Returns ``(j_template (J, 3), j_dirs (J, 3, K))``.
    """
    return J_regressor @ v_template, backend.einsum("jv,vck->jck", J_regressor, shapedirs)


def shaped_joints(J_regressor, v_template, shapedirs, betas):
    """Rest joints ``(B, J, 3)`` of the shape ``betas (B, K')``: the same as
    ``regress_joints(J_regressor, shape_blend(v_template, shapedirs, betas))``
    through :func:`joint_shape_basis`."""
    k = betas.shape[-1]
    return shape_blend(*joint_shape_basis(J_regressor, v_template, shapedirs[..., :k]), betas)


class _Tree:
    """A kinematic tree's levels (joints of one depth and their parents), cached per ``parents``.

    For numpy the indices are slices where they can be (consecutive joints, or one parent
    shared by the whole level, which broadcasts): a view costs half a fancy-index gather.
    """

    def __init__(self, parents: np.ndarray):
        self.parents = parents
        levels = depth_levels(parents)
        self.roots = levels[0]
        self.children = np.nonzero(parents >= 0)[0]
        self.levels = [(lvl, parents[lvl]) for lvl in levels[1:]]
        self.np_children = _as_index(self.children)
        self.np_levels = [(_as_index(lvl), _as_index(par)) for lvl, par in self.levels]
        self._torch: dict = {}

    def torch_levels(self, device):
        """:attr:`levels` etc. as index tensors on ``device`` (cached)."""
        key = str(device)
        if key not in self._torch:
            import torch

            t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
            self._torch[key] = (t(self.roots), t(self.children), t(self.parents[self.children]),
                                [(t(lvl), t(par)) for lvl, par in self.levels])
        return self._torch[key]


def _as_index(ix: np.ndarray):
    """``ix`` as a slice if it is a run of consecutive ids or one repeated id, else itself."""
    if len(ix) and np.all(ix == ix[0]):
        return slice(int(ix[0]), int(ix[0]) + 1)
    if len(ix) and np.all(np.diff(ix) == 1):
        return slice(int(ix[0]), int(ix[-1]) + 1)
    return ix


@lru_cache(maxsize=16)
def _tree_cached(key: bytes) -> _Tree:
    parents = np.frombuffer(key, np.int64).copy()
    parents.setflags(write=False)
    return _Tree(parents)


def _tree(parents) -> _Tree:
    return _tree_cached(np.ascontiguousarray(parents, np.int64).tobytes())


def forward_kinematics_rt(rot_mats, joints, parents):
    """Forward kinematics: compose relative rotations along the tree (the one implementation).

    rot_mats: ``(B, J, 3, 3)`` rotation of each joint relative to its parent (a root's is
    global); joints: ``(B, J, 3)`` rest joint positions; parents: ``(J,)`` ints, ``-1`` for a
    root, topologically sorted (``parents[j] < j``).

    Returns ``(posed (B, J, 3), G (B, J, 3, 3), t (B, J, 3))``: posed joint positions, global
    rotations and the skinning translations ``t = posed - G @ joints`` (a rest-pose point x
    skinned to joint j goes to ``G_j x + t_j``).  The loop runs over tree *levels*, each level
    vectorised over its joints.  torch: differentiable; numpy: one ``4 x 4`` product per level
    into a preallocated array (a few us per level: the batch-1 IK uses it, :mod:`model_runtime.ik.numpy_path`).
    """
    tree = _tree(parents)
    if backend.is_torch(rot_mats):
        import torch

        roots, children, child_par, levels = tree.torch_levels(rot_mats.device)
        rel = joints.clone()
        rel[:, children] = joints[:, children] - joints[:, child_par]
        G = torch.empty_like(rot_mats)
        P = torch.empty_like(joints)
        G[:, roots] = rot_mats[:, roots]
        P[:, roots] = rel[:, roots]
        for lvl, par in levels:
            Gp = G[:, par]
            G[:, lvl] = Gp @ rot_mats[:, lvl]
            P[:, lvl] = P[:, par] + (Gp @ rel[:, lvl, :, None])[..., 0]
    else:
        T = _homogeneous_chain(rot_mats, joints, tree)
        G, P = T[..., :3, :3], T[..., :3, 3]
    return P, G, P - (G @ joints[..., None])[..., 0]


def _homogeneous_chain(rot_mats, joints, tree: _Tree):
    """numpy: global ``[G | posed]`` ``(B, J, 4, 4)`` from local ``[R | bone offset]``, one product per level."""
    B, J = rot_mats.shape[:2]
    T = np.zeros((B, J, 4, 4), np.result_type(rot_mats, joints))
    T[..., :3, :3] = rot_mats
    offsets = T[..., :3, 3]                                              # a view into T
    offsets[:] = joints
    offsets[:, tree.np_children] -= joints[:, tree.parents[tree.children]]
    T[..., 3, 3] = 1.0
    for lvl, par in tree.np_levels:
        T[:, lvl] = T[:, par] @ T[:, lvl]
    return T


def forward_kinematics(rot_mats, joints, parents):
    """:func:`forward_kinematics_rt` as LBS needs it.

    Returns ``(posed_joints (B, J, 3), transforms (B, J, 4, 4))`` where
    ``transforms[:, j]`` maps a rest-pose point skinned to joint j to its
    posed location (the rest joint offset already removed): ``[G_j | t_j]``.
    """
    if not backend.is_torch(rot_mats):
        T = _homogeneous_chain(rot_mats, joints, _tree(parents))
        posed = T[..., :3, 3].copy()
        T[..., :3, 3] -= (T[..., :3, :3] @ joints[..., None])[..., 0]
        return posed, T
    posed, G, t = forward_kinematics_rt(rot_mats, joints, parents)
    top = backend.cat([G, t[..., None]], axis=-1)  # (B, J, 3, 4)
    bottom = backend.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return posed, backend.cat([top, bottom], axis=-2)


def pose_features(rot_mats):
    """Pose-corrective features ``(B, 9*(J-1))``: ``R - I`` of every non-root joint."""
    Bsz, J = rot_mats.shape[:2]
    eye = backend.eye_like(rot_mats, 3)
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
    A = backend.swapaxes_last2(transforms[..., :3, :].reshape(Bsz, J, 12))     # (B, 12, J)
    T = (A @ backend.swapaxes_last2(weights)).reshape(Bsz, 3, 4, V)             # (B, 3, 4, V): T[b, m, n, v]
    x = backend.swapaxes_last2(vertices)[:, None]                                # (B, 1, 3, V)
    if backend.is_torch(T):
        import torch

        out = torch.addcmul(T[:, :, 3], T[:, :, 0], x[:, :, 0])                 # (B, 3, V)
        out = out.addcmul_(T[:, :, 1], x[:, :, 1]).addcmul_(T[:, :, 2], x[:, :, 2])
    else:
        out = T[:, :, 3] + T[:, :, 0] * x[:, :, 0] + T[:, :, 1] * x[:, :, 1] + T[:, :, 2] * x[:, :, 2]
    return backend.swapaxes_last2(out)


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
