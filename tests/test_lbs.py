"""LBS / FK against a naive per-joint reference, numpy vs torch, CPU batching."""
import numpy as np
import torch

from model_runtime.core import lbs, rotations as R
from model_runtime.core.skeleton import JOINT_NAMES, PARENTS, depth_levels


def _random_model(V=500, seed=0):
    rng = np.random.default_rng(seed)
    vt = rng.normal(size=(V, 3)).astype(np.float64)
    sd = rng.normal(size=(V, 3, 16)) * 0.01
    Jr = np.abs(rng.normal(size=(52, V)))
    Jr /= Jr.sum(1, keepdims=True)
    W = np.abs(rng.normal(size=(V, 52))) ** 4
    W /= W.sum(1, keepdims=True)
    return vt, sd, Jr, W


def _naive(betas, rotm, vt, sd, Jr, W):
    v = vt + np.einsum("vck,k->vc", sd, betas)
    j = Jr @ v
    G = []
    for k in range(52):
        M = np.eye(4)
        M[:3, :3] = rotm[k]
        M[:3, 3] = j[k] - (j[PARENTS[k]] if k else 0)
        G.append(M if k == 0 else G[PARENTS[k]] @ M)
    G = np.stack(G)
    A = G.copy()
    A[:, :3, 3] -= np.einsum("jab,jb->ja", G[:, :3, :3], j)
    T = np.einsum("vj,jab->vab", W, A)
    return np.einsum("vab,vb->va", T[:, :3, :3], v) + T[:, :3, 3], G[:, :3, 3]


def test_skeleton_order_and_levels():
    assert len(JOINT_NAMES) == 52 and JOINT_NAMES[15] == "head" and JOINT_NAMES[22] == "left_index1"
    assert JOINT_NAMES[37] == "right_index1" and JOINT_NAMES[-1] == "right_thumb3"
    levels = depth_levels(PARENTS)
    assert sum(len(x) for x in levels) == 52 and len(levels) <= 12


def test_lbs_matches_naive_reference_numpy_and_torch():
    vt, sd, Jr, W = _random_model()
    rng = np.random.default_rng(3)
    betas = rng.normal(size=(3, 16))
    rotm = R.axis_angle_to_matrix(rng.normal(size=(3, 52, 3)) * 0.6)
    v, j, _ = lbs.lbs(betas, rotm, vt, sd, Jr, W, PARENTS)
    for b in range(3):
        vn, jn = _naive(betas[b], rotm[b], vt, sd, Jr, W)
        np.testing.assert_allclose(v[b], vn, atol=1e-10)
        np.testing.assert_allclose(j[b], jn, atol=1e-10)
    tt = [torch.tensor(x) for x in (betas, rotm, vt, sd, Jr, W)]
    vt_, jt_, _ = lbs.lbs(*tt, PARENTS)
    np.testing.assert_allclose(vt_.numpy(), v, atol=1e-10)


def test_lbs_identity_pose_returns_shaped_rest_and_is_differentiable():
    vt, sd, Jr, W = (torch.tensor(x, dtype=torch.float32) for x in _random_model(200))
    betas = torch.zeros(2, 16, requires_grad=True)
    rot6d = R.matrix_to_rot6d(torch.eye(3).expand(2, 52, 3, 3)).clone().requires_grad_(True)
    v, j, _ = lbs.lbs(betas, R.rot6d_to_matrix(rot6d), vt, sd, Jr, W, PARENTS,
                      transl=torch.ones(2, 3), scale=torch.full((2,), 2.0))
    torch.testing.assert_close(v, (vt * 2 + 1).expand(2, -1, -1), atol=1e-5, rtol=0)
    (v.square().sum() + j.sum()).backward()
    assert rot6d.grad is not None and torch.isfinite(rot6d.grad).all() and betas.grad.abs().sum() > 0
