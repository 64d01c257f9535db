"""Small-batch CPU path of :class:`~.inference.IKSolver`: the same maths in numpy.

Why: at batch 1 the IK is ~150 tiny tensor operations (input frame, two
MLPs, 6D -> matrices, forward kinematics, limb refinement, mirroring), and
torch's per-operation dispatch (~5 us each on this CPU) cost more than the
arithmetic: 1.1 ms for both networks + refinement.  numpy's per-call overhead
is ~1 us and a 512x512 matrix-vector product costs the same in both, so the
identical computation takes ~0.6 ms here (docs/iknet.md; cap numpy's BLAS
threads on a busy CPU, see :class:`~.inference.IKSolver`).  The torch modules remain the
reference (training, large batches, GPU); this module mirrors them line by
line and is tested against them (``tests/test_iknet.py``):

* :func:`body_input` / :func:`hand_input`  <->  :mod:`.inputs`;
* :class:`NumpyIKNet`, :class:`NumpyCorrectionNet`  <->  :class:`.networks.IKNet`,
  :class:`.networks.BodyCorrectionNet` (and :func:`.networks.two_stage_body`);
* :class:`NumpyBodyKinematics`              <->  :class:`model_runtime.models.keypoints.PartKinematics` (body);
* :class:`NumpyLimbRefiner`                 <->  :func:`.refine.refine_limbs`.

All arrays are float32 and carry a leading batch dimension ``B``.
"""
from __future__ import annotations

import numpy as np

from ..core import backend, lbs, rotations
from .inputs import HAND_MCP, HIPS, NECK, PELVIS, SHOULDERS
from .refine import _JOINTS, _PARENT0, _TARGET, _TIP

_F = np.float32
MIRROR = np.array([-1.0, 1.0, 1.0], _F)
_EYE = np.eye(3, dtype=_F)
_IDENTITY6D = np.array([1, 0, 0, 0, 1, 0], _F)
_MIRROR_ROT = MIRROR[:, None] * MIRROR[None, :]          # M R M = R * (m_i m_j) for M = diag(m)


def _unit(v: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    return v / np.maximum(backend.norm(v), eps)


def _cross(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a x b`` over the last axis ``(..., 3)`` (as :func:`~model_runtime.core.backend.cross`), into ``out``."""
    return np.subtract(a.take(_I1, -1) * b.take(_I2, -1), a.take(_I2, -1) * b.take(_I1, -1), out=out)


# Gathers use ``ndarray.take`` with index arrays made once: ~1 us, where ``a[..., [1, 2, 0]]`` costs ~5 us
# (the list becomes an array and goes through the general fancy-indexing machinery on every call).
_I1, _I2 = np.array([1, 2, 0]), np.array([2, 0, 1])
#: the keypoints the body frame reads: pelvis, hips, shoulders, neck
_FRAME_KP = np.array([PELVIS, *HIPS, *SHOULDERS, NECK])
#: the keypoints the hand size reads: wrist and MCPs
_HAND_SIZE_KP, _HAND_MCP = np.array([0, *HAND_MCP]), np.array(HAND_MCP)


def body_input(kp: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kp ``(B, 24, 3)``, conf ``(B, 24)`` -> (kp in the body frame ``(B, 24, 3)``, conf, frame ``(B, 3, 3)``).

    Same as :func:`.inputs.body_input` (pelvis-relative, missing points zeroed, ``kp @ frame``).  When
    every frame sees its pelvis, hips and neck (the usual case) the fallbacks are skipped: the
    same values with a third of the operations."""
    conf = np.clip(conf, 0.0, 1.0)
    ok = conf > 0
    if ok.take(_FRAME_KP, 1).all():
        rel = kp - kp[:, PELVIS, None]
        rel *= ok[..., None]
        x = rel[:, HIPS[0]] - rel[:, HIPS[1]]
        y = rel[:, NECK]
    else:
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
    n = backend.norm(y)
    if (n > 1e-6).all():
        y = y / np.maximum(n, 1e-8)
    else:
        y = np.where(n > 1e-6, y / np.maximum(n, 1e-8), backend.cross(_EYE[2], x))
    y = _unit(y)
    frame = np.empty(x.shape[:-1] + (3, 3), _F)
    frame[..., 0], frame[..., 1] = x, y
    _cross(x, y, out=frame[..., 2])
    return rel @ frame, conf, frame


def hand_input(kp: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """kp ``(B, 21, 3)``, conf ``(B, 21)`` -> (wrist-relative kp / hand size, conf); as :func:`.inputs.hand_input`."""
    conf = np.clip(conf, 0.0, 1.0)
    rel = kp - kp[:, :1]
    if (conf.take(_HAND_SIZE_KP, 1) > 0).all():     # wrist and MCPs seen on every hand: no fallbacks
        size = np.maximum(backend.norm(rel.take(_HAND_MCP, 1))[..., 0].sum(1) / _F(len(HAND_MCP)), 1e-4)
        return rel / size[:, None, None] * (conf > 0)[..., None], conf
    present = (conf[:, HAND_MCP] > 0).astype(_F)
    n = present.sum(1)
    usable = (n > 0) & (conf[:, 0] > 0)
    size = (backend.norm(rel[:, HAND_MCP])[..., 0] * present).sum(1) / np.maximum(n, 1)
    size = np.maximum(np.where(usable, size, 1.0), 1e-4).astype(_F)
    conf = conf * usable[:, None]
    return rel / size[:, None, None] * (conf > 0)[..., None], conf


def rot6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    """6D ``(..., 6)`` -> rotation matrices ``(..., 3, 3)``: :func:`model_runtime.core.rotations.rot6d_to_matrix`
    (Gram-Schmidt, same operations) written into one preallocated array."""
    a1, a2 = d6[..., 0:3], d6[..., 3:6]
    R = np.empty(d6.shape[:-1] + (3, 3), _F)
    b1 = np.divide(a1, np.maximum(backend.norm(a1), 1e-8), out=R[..., 0])
    b2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 = np.divide(b2, np.maximum(backend.norm(b2), 1e-8), out=R[..., 1])
    _cross(b1, b2, out=R[..., 2])
    return R


#: largest batch whose MLP layers run as one matrix-vector product per sample: OpenBLAS's gemm packs the
#: whole weight matrix for every call, so ``W @ h`` with 2-4 columns costs 3-5x one gemv here, while
#: 2-4 gemv read the same weights from the cache (docs/iknet.md, "Batch-1 speed")
GEMV_MAX_BATCH = 4


class _NumpyMLP:
    """Float32 copy of a torch ``trunk`` (Linear + SiLU) and ``head``: weights ``W (out, in)`` (torch's
    layout).  Batches of at most :data:`GEMV_MAX_BATCH` run one BLAS gemv ``W @ x_i`` per sample and
    layer into a preallocated ``(B, out)`` array, larger ones one gemm ``W @ h`` with the features
    as columns; bias and SiLU in place (the same float operations as ``h / (1 + exp(-h))``)."""

    def __init__(self, net):
        self.cfg = net.cfg
        linears = [m for m in net.trunk if hasattr(m, "weight")] + [net.head]
        self.layers = [(np.ascontiguousarray(m.weight.detach().cpu().numpy(), dtype=_F),
                        np.ascontiguousarray(m.bias.detach().cpu().numpy(), dtype=_F)) for m in linears]

    def mlp(self, x: np.ndarray) -> np.ndarray:
        """``(B, D_in) -> (B, D_out)``."""
        B = x.shape[0]
        last = len(self.layers) - 1
        if B > GEMV_MAX_BATCH:
            h = x.T
            for i, (W, b) in enumerate(self.layers):
                h = W @ h
                h += b[:, None]
                if i < last:
                    _silu_(h)
            return h.T
        h = np.ascontiguousarray(x, dtype=_F)
        for i, (W, b) in enumerate(self.layers):
            y = np.empty((B, W.shape[0]), _F)
            for j in range(B):
                np.matmul(W, h[j], out=y[j])
            y += b
            if i < last:
                _silu_(y)
            h = y
        return h


def _silu_(h: np.ndarray) -> None:
    """SiLU in place: ``h / (1 + exp(-h))`` (float32, same operations as the out-of-place form)."""
    t = np.negative(h)
    np.exp(t, out=t)
    t += 1.0
    np.divide(h, t, out=h)


def root_to_frame(rot6d: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """As :func:`.networks.root_to_frame`: root 6D ``rot6d[:, 0]`` -> ``frame @ R_root`` (in place, returned)."""
    B = rot6d.shape[0]
    rot6d[:, 0] = (frame @ rot6d[:, 0].reshape(B, 2, 3).transpose(0, 2, 1)).transpose(0, 2, 1).reshape(B, 6)
    return rot6d


class NumpyIKNet(_NumpyMLP):
    """Inference copy of an :class:`.networks.IKNet`."""

    def __call__(self, kp: np.ndarray, conf: np.ndarray, frame: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """kp ``(B, K, 3)``, conf ``(B, K)``, optional frame ``(B, 3, 3)`` -> ``rot6d (B, R, 6)``
        [, ``betas (B, 16)``, ``scale (B,)``], exactly as :meth:`.networks.IKNet.forward`."""
        B = kp.shape[0]
        y = self.mlp(np.concatenate([(kp * conf[..., None]).reshape(B, -1), conf], 1))
        nR = self.cfg.num_rotations
        rot6d = y[:, :6 * nR].reshape(B, nR, 6) + _IDENTITY6D
        if frame is not None:
            rot6d = root_to_frame(rot6d, frame)
        out = {"rot6d": rot6d}
        if self.cfg.with_shape:
            out["betas"] = y[:, 6 * nR:6 * nR + 16]
            out["scale"] = np.exp(y[:, 6 * nR + 16])
        return out


class NumpyCorrectionNet(_NumpyMLP):
    """Inference copy of :class:`.networks.BodyCorrectionNet`."""

    def __call__(self, kp: np.ndarray, conf: np.ndarray, kp_fk: np.ndarray, rot6d: np.ndarray) -> np.ndarray:
        """kp, kp_fk ``(B, K, 3)``, conf ``(B, K)``, rot6d ``(B, R, 6)`` -> corrected rot6d ``(B, R, 6)``."""
        B = kp.shape[0]
        w = conf[..., None]
        x = np.concatenate([(kp * w).reshape(B, -1), (10.0 * (kp - kp_fk) * w).reshape(B, -1), conf,
                            rot6d.reshape(B, -1)], 1)
        return rot6d + self.mlp(x).reshape(rot6d.shape)


class NumpyBodyKinematics:
    """:class:`~model_runtime.models.keypoints.PartKinematics` (body) forward pass in numpy, constants precomputed.

    :meth:`rest` (the shape blend of the 22 joints and the keypoint vertices, one matrix product) is
    split from :meth:`__call__` (forward kinematics, :func:`~model_runtime.core.lbs.forward_kinematics_rt`)
    so the two passes of one solve (correction stage, refinement) share it."""

    def __init__(self, kin):
        if kin.part != "body":
            raise ValueError(f"NumpyBodyKinematics needs the body PartKinematics, got part {kin.part!r}")
        g = lambda t: t.detach().cpu().numpy().astype(_F)  # noqa: E731
        J_template, V_template = g(kin.J_template), g(kin.V_template)          # (22, 3), (Kv, 3)
        self.num_joints = len(J_template)
        self.template = np.concatenate([J_template, V_template])                # (22 + Kv, 3)
        self.dirs = np.concatenate([g(kin.J_dirs), g(kin.V_dirs)])              # (22 + Kv, 3, 16)
        self.V_weights = g(kin.V_weights)                                        # (Kv, 22)
        self.parents = kin.parents                                               # (22,)
        self.kp_joint = kin._kpj.cpu().numpy()                                   # (Kj,)
        self.order = kin._order.cpu().numpy()                                    # (K,)

    def rest(self, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """betas ``(B, 16)`` -> rest joints ``(B, 22, 3)`` and rest keypoint vertices ``(B, Kv, 3)``."""
        r = lbs.shape_blend(self.template, self.dirs, betas)
        return r[:, :self.num_joints], r[:, self.num_joints:]

    def __call__(self, R: np.ndarray, rest: tuple[np.ndarray, np.ndarray],
                 scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """R ``(B, 22, 3, 3)`` relative (root: global), ``rest`` from :meth:`rest`, scale ``(B,)`` -> joints
        ``(B, 22, 3)``, keypoints ``(B, 24, 3)`` (pelvis at 0, times scale), globals ``(B, 22, 3, 3)``."""
        B = R.shape[0]
        J_rest, v_rest = rest
        P, G, t = lbs.forward_kinematics_rt(R, J_rest, self.parents)
        Gv = (self.V_weights @ G.reshape(B, -1, 9)).reshape(B, -1, 3, 3)
        verts = (Gv @ v_rest[..., None])[..., 0] + self.V_weights @ t
        s = scale[:, None, None]
        kps = (np.concatenate([P.take(self.kp_joint, 1), verts], 1).take(self.order, 1) - P[:, :1]) * s
        return (P - P[:, :1]) * s, kps, G


#: the skew matrix ``[v]_x`` as a gather of ``v`` times signs (row-major 3 x 3)
_SKEW_IDX, _SKEW_SIGN = np.array([0, 2, 1, 2, 0, 0, 1, 0, 0]), np.array([0, -1, 1, 1, 0, -1, -1, 1, 0], _F)


def _swing(ab: np.ndarray) -> np.ndarray:
    """Smallest rotations ``(..., 3, 3)`` taking directions ``ab[0]`` to ``ab[1]`` (``ab (2, ..., 3)``), as
    :func:`.refine._swing` (Rodrigues: ``I + K + K^2 / (1 + c)``, ``K = [a x b]_x``, ``c = a . b``)."""
    ab = _unit(ab, 1e-9)
    g1, g2 = ab.take(_I1, -1), ab.take(_I2, -1)
    v = g1[0] * g2[1] - g2[0] * g1[1]                                  # a x b
    c = (ab[0] * ab[1]).sum(-1)[..., None, None]
    K = (v.take(_SKEW_IDX, -1) * _SKEW_SIGN).reshape(v.shape[:-1] + (3, 3))
    return _EYE + K + K @ K / np.maximum(1.0 + c, 1e-4)


class NumpyLimbRefiner:
    """:func:`.refine.refine_limbs` on the output of a :class:`NumpyBodyKinematics`."""

    def __init__(self, kin: NumpyBodyKinematics):
        self.kin = kin
        self.joints, self.tip, self.target = np.asarray(_JOINTS), np.asarray(_TIP), np.asarray(_TARGET)  # (4, 3), (4,), (4, 3)
        self.parent0 = np.asarray(_PARENT0)                                                            # (4,)

    def __call__(self, R: np.ndarray, rest: tuple[np.ndarray, np.ndarray], scale: np.ndarray, kp: np.ndarray,
                 conf: np.ndarray) -> np.ndarray:
        """R ``(B, 22, 3, 3)`` relative rotations (root in the keypoints' frame); ``rest`` from
        :meth:`NumpyBodyKinematics.rest`; scale ``(B,)``; kp ``(B, 24, 3)`` pelvis-relative observed
        keypoints; conf ``(B, 24)``.  Returns the refined relative rotations ``(B, 22, 3, 3)`` (a new array)."""
        joints, kps, G = self.kin(R, rest, scale)
        P = np.concatenate([joints.take(self.joints, 1), kps.take(self.tip, 1)[:, :, None]], 2)   # (B, 4, 4, 3)
        Gc = G.take(self.joints, 1)                                                                # (B, 4, 3, 3, 3)
        target = kp.take(self.target, 1)                                                           # (B, 4, 3, 3)
        ok = conf.take(self.target, 1) > 0                                                         # (B, 4, 3)
        every = ok.all()
        ok = ok[..., None, None]
        for k in range(3):  # three bones down each chain
            p = P[:, :, k:k + 1]
            D = _swing(np.stack((P[:, :, k + 1], target[:, :, k])) - P[:, :, k])
            if not every:
                D = np.where(ok[:, :, k], D, _EYE)
            P[:, :, k + 1:] = p + (P[:, :, k + 1:] - p) @ D.transpose(0, 1, 3, 2)
            Gc[:, :, k:] = D[:, :, None] @ Gc[:, :, k:]
        parent = np.concatenate([G.take(self.parent0, 1)[:, :, None], Gc[:, :, :2]], 2)                        # (B, 4, 3, 3, 3)
        R = R.copy()
        R[:, self.joints] = parent.transpose(0, 1, 2, 4, 3) @ Gc
        return R


class NumpyIK:
    """The networks (+ optional correction stage and limb refinement) of an
    :class:`~.inference.IKSolver` in numpy; ``kin`` (body PartKinematics) is needed by
    ``correction_net`` and ``refine``."""

    def __init__(self, body_net, hand_net, kin=None, correction_net=None, refine: bool = False):
        self.body_net, self.hand_net = NumpyIKNet(body_net), NumpyIKNet(hand_net)
        self.correction_net = NumpyCorrectionNet(correction_net) if correction_net is not None else None
        self.kin = NumpyBodyKinematics(kin) if kin is not None else None
        self.refiner = NumpyLimbRefiner(self.kin) if refine else None

    def solve_body(self, kp: np.ndarray, conf: np.ndarray) -> dict[str, np.ndarray]:
        """kp ``(B, 24, 3)``, conf ``(B, 24)`` (float32) -> ``rot6d (B, 22, 6)``, ``betas (B, 16)``, ``scale (B,)``."""
        x, c, frame = body_input(kp, conf)
        rest = None
        if self.correction_net is None:
            out = self.body_net(x, c, frame)
        else:                                                    # as networks.two_stage_body
            out = self.body_net(x, c)
            rest = self.kin.rest(out["betas"])
            _, kp_fk, _ = self.kin(rot6d_to_matrix(out["rot6d"]), rest, out["scale"])
            out["rot6d"] = root_to_frame(self.correction_net(x, c, kp_fk, out["rot6d"]), frame)
        R = rot6d_to_matrix(out["rot6d"])
        if self.refiner is not None:
            rest = self.kin.rest(out["betas"]) if rest is None else rest
            R = self.refiner(R, rest, out["scale"], x @ frame.transpose(0, 2, 1), c)
        rot6d = rotations.matrix_to_rot6d(R)
        return {"rot6d": rot6d, "betas": out["betas"], "scale": out["scale"]}

    def solve_hands_full(self, kp: np.ndarray, conf: np.ndarray) -> dict[str, np.ndarray]:
        """kp ``(B, 2, 21, 3)``, conf ``(B, 2, 21)`` -> ``rot6d (B, 2, 15, 6)``, ``wrist_global (B, 2, 3, 3)``."""
        B = kp.shape[0]
        kp = np.concatenate([kp[:, 0] * MIRROR, kp[:, 1]], 0)                   # (2B, 21, 3): mirrored lefts, rights
        x, c = hand_input(kp, conf.transpose(1, 0, 2).reshape(2 * B, 21))
        R = rot6d_to_matrix(self.hand_net(x, c)["rot6d"])                       # (2B, 16, 3, 3)
        R[:B] *= _MIRROR_ROT                                                    # left: M R M
        R = R.reshape(2, B, 16, 3, 3).transpose(1, 0, 2, 3, 4)
        fingers = R[:, :, 1:]
        return {"rot6d": rotations.matrix_to_rot6d(fingers),
                "wrist_global": np.ascontiguousarray(R[:, :, 0])}
