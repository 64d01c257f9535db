"""Small-batch CPU path of :class:`~.inference.IKSolver`: the same maths in numpy.

Why: at batch 1 the IK is ~150 tiny tensor operations (input frame, two
MLPs, 6D -> matrices, forward kinematics, limb refinement, mirroring), and
torch's per-operation dispatch (~5 us each on this CPU) cost more than the
arithmetic: 1.1 ms for both networks + refinement.  numpy's per-call overhead
is ~1 us and a 512x512 matrix-vector product costs the same in both, so the
identical computation takes ~0.3 ms here.  The torch modules remain the
reference (training, large batches, GPU); this module mirrors them line by
line and is tested against them (``tests/test_iknet.py``):

* :func:`body_input` / :func:`hand_input`  <->  :mod:`.inputs`;
* :class:`NumpyIKNet`                       <->  :class:`.networks.IKNet`;
* :class:`NumpyLimbRefiner`                 <->  :func:`.refine.refine_limbs`
  (+ the forward kinematics of :class:`model_runtime.keypoints.PartKinematics`,
  restricted to what the refinement reads: joints, global rotations and the two
  big-toe vertices).

All arrays are float32 and carry a leading batch dimension ``B``.
"""
from __future__ import annotations

import numpy as np

from ..skeleton import BODY_KEYPOINT_NAMES
from .inputs import HAND_MCP, HIPS, NECK, PELVIS, SHOULDERS
from .refine import _JOINTS, _PARENT0, _TARGET, _TIP

_F = np.float32
MIRROR = np.array([-1.0, 1.0, 1.0], _F)
_EYE = np.eye(3, dtype=_F)
_IDENTITY6D = np.array([1, 0, 0, 0, 1, 0], _F)


# np.cross and np.linalg.norm cost ~10 and ~4 us per call on tiny arrays; these cost ~1-2 us
_I1, _I2 = [1, 2, 0], [2, 0, 1]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a x b`` over the last axis ``(..., 3)``."""
    return a[..., _I1] * b[..., _I2] - a[..., _I2] * b[..., _I1]


def _norm(v: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis, kept: ``(..., 3) -> (..., 1)``."""
    return np.sqrt((v * v).sum(-1, keepdims=True))


def _unit(v: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    return v / np.maximum(_norm(v), eps)


def rot6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """6D ``(..., 6)`` -> ``(..., 3, 3)``: :func:`model_runtime.rotations.rot6d_to_matrix` (Gram-Schmidt)."""
    b1 = _unit(d6[..., 0:3])
    a2 = d6[..., 3:6]
    b2 = _unit(a2 - (b1 * a2).sum(-1, keepdims=True) * b1)
    return np.stack([b1, b2, _cross(b1, b2)], axis=-1)


def body_input(kp: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kp ``(B, 24, 3)``, conf ``(B, 24)`` -> (kp in the body frame ``(B, 24, 3)``, conf, frame ``(B, 3, 3)``).

    Same as :func:`.inputs.body_input` (pelvis-relative, missing points zeroed, ``kp @ frame``)."""
    conf = np.clip(conf, 0.0, 1.0)
    ok = conf > 0
    root = np.where(ok[:, PELVIS, None], kp[:, PELVIS], kp[:, HIPS].mean(1))
    rel = (kp - root[:, None]) * ok[..., None]
    # body_frame: x right hip -> left hip (else shoulders, else +x), y towards the neck, z = x cross y
    has_hips = ok[:, HIPS].all(1, keepdims=True)
    has_sh = ok[:, SHOULDERS].all(1, keepdims=True)
    x = np.where(has_hips, rel[:, HIPS[0]] - rel[:, HIPS[1]],
                 np.where(has_sh, rel[:, SHOULDERS[0]] - rel[:, SHOULDERS[1]], _EYE[0]))
    up_pair = rel[:, SHOULDERS].mean(1) - rel[:, HIPS].mean(1)
    y = np.where(ok[:, NECK, None], rel[:, NECK], np.where(has_sh & has_hips, up_pair, _EYE[1]))
    x = _unit(x)
    y = y - (x * y).sum(-1, keepdims=True) * x
    n = _norm(y)
    y = np.where(n > 1e-6, y / np.maximum(n, 1e-8), _cross(_EYE[2], x))
    y = _unit(y)
    frame = np.stack([x, y, _cross(x, y)], axis=-1)
    return rel @ frame, conf, frame


def hand_input(kp: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """kp ``(B, 21, 3)``, conf ``(B, 21)`` -> (wrist-relative kp / hand size, conf); as :func:`.inputs.hand_input`."""
    conf = np.clip(conf, 0.0, 1.0)
    rel = kp - kp[:, :1]
    present = (conf[:, HAND_MCP] > 0).astype(_F)
    n = present.sum(1)
    usable = (n > 0) & (conf[:, 0] > 0)
    size = (_norm(rel[:, HAND_MCP])[..., 0] * present).sum(1) / np.maximum(n, 1)
    size = np.maximum(np.where(usable, size, 1.0), 1e-4).astype(_F)
    conf = conf * usable[:, None]
    return rel / size[:, None, None] * (conf > 0)[..., None], conf


class NumpyIKNet:
    """Inference copy of an :class:`.networks.IKNet`: float32 weights ``W (out, in)`` (torch's layout),
    features kept as columns ``h (features, B)`` so every layer is ``W @ h + b`` (BLAS gemv at
    batch 1, and 2-3x faster than ``h.T @ W.T`` for the few-row batches served here)."""

    def __init__(self, net):
        cfg = net.cfg
        self.cfg = cfg
        linears = [m for m in net.trunk if hasattr(m, "weight")] + [net.head]
        self.layers = [(np.ascontiguousarray(m.weight.detach().cpu().numpy(), dtype=_F),
                        m.bias.detach().cpu().numpy().astype(_F)[:, None]) for m in linears]

    def __call__(self, kp: np.ndarray, conf: np.ndarray, frame: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """kp ``(B, K, 3)``, conf ``(B, K)``, optional frame ``(B, 3, 3)`` -> ``rot6d (B, R, 6)``
        [, ``betas (B, 16)``, ``scale (B,)``], exactly as :meth:`.networks.IKNet.forward`."""
        B = kp.shape[0]
        h = np.concatenate([(kp * conf[..., None]).reshape(B, -1), conf], 1).T   # (4K, B)
        for W, b in self.layers[:-1]:
            h = W @ h + b
            h = h / (1.0 + np.exp(-h))                                   # SiLU
        W, b = self.layers[-1]
        y = (W @ h + b).T                                                # (B, n_out)
        nR = self.cfg.num_rotations
        rot6d = y[:, :6 * nR].reshape(B, nR, 6) + _IDENTITY6D
        if frame is not None:
            rot6d[:, 0] = (frame @ rot6d[:, 0].reshape(B, 2, 3).transpose(0, 2, 1)).transpose(0, 2, 1).reshape(B, 6)
        out = {"rot6d": rot6d}
        if self.cfg.with_shape:
            out["betas"] = y[:, 6 * nR:6 * nR + 16]
            out["scale"] = np.exp(y[:, 6 * nR + 16])
        return out


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations ``(..., 3, 3)`` taking directions ``a`` to ``b`` (``(..., 3)``), as :func:`.refine._swing`."""
    a, b = _unit(a, 1e-9), _unit(b, 1e-9)
    v = _cross(a, b)
    c = (a * b).sum(-1)[..., None, None]
    K = np.zeros(v.shape[:-1] + (3, 3), _F)
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    return _EYE + K + K @ K / np.maximum(1.0 + c, 1e-4)


class NumpyLimbRefiner:
    """:func:`.refine.refine_limbs` with the body forward kinematics it needs, constants precomputed.

    Built from a body :class:`~model_runtime.keypoints.PartKinematics` (its 22 joints and the
    skinning rows of the two big-toe keypoint vertices)."""

    def __init__(self, kin):
        if kin.part != "body":
            raise ValueError(f"NumpyLimbRefiner needs the body PartKinematics, got part {kin.part!r}")
        g = lambda t: t.detach().cpu().numpy().astype(_F)  # noqa: E731
        self.J_template = g(kin.J_template)                                      # (22, 3)
        self.J_dirs = g(kin.J_dirs).reshape(-1, kin.J_dirs.shape[-1]).T          # (16, 22 * 3)
        self.parents = kin.parents                                               # (22,)
        self.levels = [lv.cpu().numpy() for lv in kin._levels[1:]]
        self.level_parents = [self.parents[lv] for lv in self.levels]
        # the chain tips: big toes are skinned vertices, wrists are joints
        order = kin._order.cpu().numpy()                     # keypoint k is row order[k] of [joint kps, vertices]
        n_joint_kp = len(kin._kpj)
        tips = np.asarray(_TIP)
        self.tip_is_vertex = order[tips] >= n_joint_kp                                        # (4,)
        v_rows = order[tips][self.tip_is_vertex] - n_joint_kp
        self.tip_vertex = tips[self.tip_is_vertex]
        self.tip_joint = kin._kpj.cpu().numpy()[order[tips][~self.tip_is_vertex]]
        self.V_template = g(kin.V_template)[v_rows]                                              # (Tv, 3)
        self.V_dirs = g(kin.V_dirs)[v_rows].reshape(-1, kin.V_dirs.shape[-1]).T                  # (16, Tv * 3)
        self.V_weights = g(kin.V_weights)[v_rows]                                                # (Tv, 22)
        self.joints, self.target = np.asarray(_JOINTS), np.asarray(_TARGET)                     # (4, 3)
        self.parent0 = np.asarray(_PARENT0)                                                      # (4,)
        assert list(np.nonzero(~self.tip_is_vertex)[0]) == [2, 3] and len(BODY_KEYPOINT_NAMES) == 24

    def _fk(self, R: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """R ``(B, 22, 3, 3)``, betas ``(B, 16)`` -> joints ``(B, 22, 3)`` (pelvis at 0), globals
        ``(B, 22, 3, 3)``, big-toe vertices ``(B, 2, 3)`` (pelvis-relative), all unscaled."""
        B = R.shape[0]
        j_rest = self.J_template + (betas @ self.J_dirs).reshape(B, -1, 3)
        par = self.parents
        rel = np.concatenate([j_rest[:, :1], j_rest[:, 1:] - j_rest[:, par[1:]]], 1)
        G = np.empty_like(R)
        P = np.empty_like(j_rest)
        G[:, 0], P[:, 0] = R[:, 0], rel[:, 0]
        for lvl, lp in zip(self.levels, self.level_parents):       # tree levels, not joints
            Gp = G[:, lp]
            G[:, lvl] = Gp @ R[:, lvl]
            P[:, lvl] = P[:, lp] + (Gp @ rel[:, lvl, :, None])[..., 0]
        t = P - (G @ j_rest[..., None])[..., 0]
        v_rest = self.V_template + (betas @ self.V_dirs).reshape(B, -1, 3)
        Gv = (self.V_weights @ G.reshape(B, -1, 9)).reshape(B, -1, 3, 3)
        tv = self.V_weights @ t
        toes = (Gv @ v_rest[..., None])[..., 0] + tv
        return P - P[:, :1], G, toes - P[:, :1]

    def __call__(self, R: np.ndarray, betas: np.ndarray, scale: np.ndarray, kp: np.ndarray,
                 conf: np.ndarray) -> np.ndarray:
        """R ``(B, 22, 3, 3)`` relative rotations (root in the keypoints' frame); betas ``(B, 16)``;
        scale ``(B,)``; kp ``(B, 24, 3)`` pelvis-relative observed keypoints; conf ``(B, 24)``.
        Returns the refined relative rotations ``(B, 22, 3, 3)`` (a new array)."""
        joints, G, toes = self._fk(R, betas)
        B = R.shape[0]
        tip = np.empty((B, 4, 3), _F)
        tip[:, self.tip_is_vertex] = toes
        tip[:, ~self.tip_is_vertex] = joints[:, self.tip_joint]
        P = np.concatenate([joints[:, self.joints], tip[:, :, None]], 2) * scale[:, None, None, None]  # (B, 4, 4, 3)
        Gc = G[:, self.joints]                                                                     # (B, 4, 3, 3)
        target = kp[:, self.target]                                                                # (B, 4, 3, 3)
        ok = (conf[:, self.target] > 0)[..., None, None]                                           # (B, 4, 3, 1, 1)
        for k in range(3):  # three bones down each chain
            p = P[:, :, k:k + 1]
            D = np.where(ok[:, :, k], _swing(P[:, :, k + 1] - P[:, :, k], target[:, :, k] - P[:, :, k]), _EYE)
            P[:, :, k + 1:] = p + (P[:, :, k + 1:] - p) @ D.transpose(0, 1, 3, 2)
            Gc[:, :, k:] = D[:, :, None] @ Gc[:, :, k:]
        parent = np.concatenate([G[:, self.parent0, None], Gc[:, :, :2]], 2)                        # (B, 4, 3, 3, 3)
        R = R.copy()
        R[:, self.joints] = parent.transpose(0, 1, 2, 4, 3) @ Gc
        return R


class NumpyIK:
    """Both networks (+ optional limb refinement) of an :class:`~.inference.IKSolver` in numpy."""

    def __init__(self, body_net, hand_net, kin=None):
        self.body_net, self.hand_net = NumpyIKNet(body_net), NumpyIKNet(hand_net)
        self.refiner = NumpyLimbRefiner(kin) if kin is not None else None

    def solve_body(self, kp: np.ndarray, conf: np.ndarray) -> dict[str, np.ndarray]:
        """kp ``(B, 24, 3)``, conf ``(B, 24)`` (float32) -> ``rot6d (B, 22, 6)``, ``betas (B, 16)``, ``scale (B,)``."""
        x, c, frame = body_input(kp, conf)
        out = self.body_net(x, c, frame)
        R = rot6d_to_matrix(out["rot6d"])
        if self.refiner is not None:
            R = self.refiner(R, out["betas"], out["scale"], x @ frame.transpose(0, 2, 1), c)
        rot6d = np.concatenate([R[..., :, 0], R[..., :, 1]], -1)
        return {"rot6d": rot6d, "betas": out["betas"], "scale": out["scale"]}

    def solve_hands_full(self, kp: np.ndarray, conf: np.ndarray) -> dict[str, np.ndarray]:
        """kp ``(B, 2, 21, 3)``, conf ``(B, 2, 21)`` -> ``rot6d (B, 2, 15, 6)``, ``wrist_global (B, 2, 3, 3)``."""
        B = kp.shape[0]
        kp = np.concatenate([kp[:, 0] * MIRROR, kp[:, 1]], 0)                   # (2B, 21, 3): mirrored lefts, rights
        x, c = hand_input(kp, conf.transpose(1, 0, 2).reshape(2 * B, 21))
        R = rot6d_to_matrix(self.hand_net(x, c)["rot6d"])                       # (2B, 16, 3, 3)
        R[:B] *= MIRROR[:, None] * MIRROR[None, :]                              # left: M R M
        R = R.reshape(2, B, 16, 3, 3).transpose(1, 0, 2, 3, 4)
        fingers = R[:, :, 1:]
        return {"rot6d": np.concatenate([fingers[..., :, 0], fingers[..., :, 1]], -1),
                "wrist_global": np.ascontiguousarray(R[:, :, 0])}
