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


def _unit(v: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    return v / np.maximum(backend.norm(v), eps)


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
    n = backend.norm(y)
    y = np.where(n > 1e-6, y / np.maximum(n, 1e-8), backend.cross(_EYE[2], x))
    y = _unit(y)
    frame = np.stack([x, y, backend.cross(x, y)], axis=-1)
    return rel @ frame, conf, frame


def hand_input(kp: np.ndarray, conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """kp ``(B, 21, 3)``, conf ``(B, 21)`` -> (wrist-relative kp / hand size, conf); as :func:`.inputs.hand_input`."""
    conf = np.clip(conf, 0.0, 1.0)
    rel = kp - kp[:, :1]
    present = (conf[:, HAND_MCP] > 0).astype(_F)
    n = present.sum(1)
    usable = (n > 0) & (conf[:, 0] > 0)
    size = (backend.norm(rel[:, HAND_MCP])[..., 0] * present).sum(1) / np.maximum(n, 1)
    size = np.maximum(np.where(usable, size, 1.0), 1e-4).astype(_F)
    conf = conf * usable[:, None]
    return rel / size[:, None, None] * (conf > 0)[..., None], conf


class _NumpyMLP:
    """Float32 copy of a torch ``trunk`` (Linear + SiLU) and ``head``: weights ``W (out, in)`` (torch's
    layout), features kept as columns ``h (features, B)`` so every layer is ``W @ h + b`` (BLAS gemv
    at batch 1, and 2-3x faster than ``h.T @ W.T`` for the few-row batches served here)."""

    def __init__(self, net):
        self.cfg = net.cfg
        linears = [m for m in net.trunk if hasattr(m, "weight")] + [net.head]
        self.layers = [(np.ascontiguousarray(m.weight.detach().cpu().numpy(), dtype=_F),
                        m.bias.detach().cpu().numpy().astype(_F)[:, None]) for m in linears]

    def mlp(self, x: np.ndarray) -> np.ndarray:
        """``(B, D_in) -> (B, D_out)``."""
        h = x.T
        for W, b in self.layers[:-1]:
            h = W @ h + b
            h = h / (1.0 + np.exp(-h))                                   # SiLU
        W, b = self.layers[-1]
        return (W @ h + b).T


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
    """:class:`~model_runtime.models.keypoints.PartKinematics` (body) forward pass in numpy, constants precomputed;
    rest joints and forward kinematics are :func:`~model_runtime.core.lbs.shape_blend` and
    :func:`~model_runtime.core.lbs.forward_kinematics_rt` (their numpy branch is the fast one)."""

    def __init__(self, kin):
        if kin.part != "body":
            raise ValueError(f"NumpyBodyKinematics needs the body PartKinematics, got part {kin.part!r}")
        g = lambda t: t.detach().cpu().numpy().astype(_F)  # noqa: E731
        self.J_template = g(kin.J_template)                                      # (22, 3)
        self.J_dirs = g(kin.J_dirs)                                              # (22, 3, 16)
        self.V_template = g(kin.V_template)                                      # (Kv, 3)
        self.V_dirs = g(kin.V_dirs)                                              # (Kv, 3, 16)
        self.V_weights = g(kin.V_weights)                                        # (Kv, 22)
        self.parents = kin.parents                                               # (22,)
        self.kp_joint = kin._kpj.cpu().numpy()                                   # (Kj,)
        self.order = kin._order.cpu().numpy()                                    # (K,)

    def __call__(self, R: np.ndarray, betas: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """R ``(B, 22, 3, 3)`` relative (root: global), betas ``(B, 16)``, scale ``(B,)`` -> joints
        ``(B, 22, 3)``, keypoints ``(B, 24, 3)`` (pelvis at 0, times scale), globals ``(B, 22, 3, 3)``."""
        B = R.shape[0]
        P, G, t = lbs.forward_kinematics_rt(R, lbs.shape_blend(self.J_template, self.J_dirs, betas), self.parents)
        v_rest = lbs.shape_blend(self.V_template, self.V_dirs, betas)
        Gv = (self.V_weights @ G.reshape(B, -1, 9)).reshape(B, -1, 3, 3)
        verts = (Gv @ v_rest[..., None])[..., 0] + self.V_weights @ t
        s = scale[:, None, None]
        kps = (np.concatenate([P[:, self.kp_joint], verts], 1)[:, self.order] - P[:, :1]) * s
        return (P - P[:, :1]) * s, kps, G


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations ``(..., 3, 3)`` taking directions ``a`` to ``b`` (``(..., 3)``), as :func:`.refine._swing`."""
    a, b = _unit(a, 1e-9), _unit(b, 1e-9)
    v = backend.cross(a, b)
    c = (a * b).sum(-1)[..., None, None]
    K = np.zeros(v.shape[:-1] + (3, 3), _F)
    K[..., 0, 1], K[..., 0, 2], K[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    K[..., 1, 0], K[..., 2, 0], K[..., 2, 1] = v[..., 2], -v[..., 1], v[..., 0]
    return _EYE + K + K @ K / np.maximum(1.0 + c, 1e-4)


class NumpyLimbRefiner:
    """:func:`.refine.refine_limbs` on the output of a :class:`NumpyBodyKinematics`."""

    def __init__(self, kin: NumpyBodyKinematics):
        self.kin = kin
        self.joints, self.tip, self.target = np.asarray(_JOINTS), np.asarray(_TIP), np.asarray(_TARGET)  # (4, 3), (4,), (4, 3)
        self.parent0 = np.asarray(_PARENT0)                                                            # (4,)

    def __call__(self, R: np.ndarray, betas: np.ndarray, scale: np.ndarray, kp: np.ndarray,
                 conf: np.ndarray) -> np.ndarray:
        """R ``(B, 22, 3, 3)`` relative rotations (root in the keypoints' frame); betas ``(B, 16)``;
        scale ``(B,)``; kp ``(B, 24, 3)`` pelvis-relative observed keypoints; conf ``(B, 24)``.
        Returns the refined relative rotations ``(B, 22, 3, 3)`` (a new array)."""
        joints, kps, G = self.kin(R, betas, scale)
        P = np.concatenate([joints[:, self.joints], kps[:, self.tip, None]], 2)                   # (B, 4, 4, 3)
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
        if self.correction_net is None:
            out = self.body_net(x, c, frame)
        else:                                                    # as networks.two_stage_body
            out = self.body_net(x, c)
            _, kp_fk, _ = self.kin(rotations.rot6d_to_matrix(out["rot6d"]), out["betas"], out["scale"])
            out["rot6d"] = root_to_frame(self.correction_net(x, c, kp_fk, out["rot6d"]), frame)
        R = rotations.rot6d_to_matrix(out["rot6d"])
        if self.refiner is not None:
            R = self.refiner(R, out["betas"], out["scale"], x @ frame.transpose(0, 2, 1), c)
        rot6d = rotations.matrix_to_rot6d(R)
        return {"rot6d": rot6d, "betas": out["betas"], "scale": out["scale"]}

    def solve_hands_full(self, kp: np.ndarray, conf: np.ndarray) -> dict[str, np.ndarray]:
        """kp ``(B, 2, 21, 3)``, conf ``(B, 2, 21)`` -> ``rot6d (B, 2, 15, 6)``, ``wrist_global (B, 2, 3, 3)``."""
        B = kp.shape[0]
        kp = np.concatenate([kp[:, 0] * MIRROR, kp[:, 1]], 0)                   # (2B, 21, 3): mirrored lefts, rights
        x, c = hand_input(kp, conf.transpose(1, 0, 2).reshape(2 * B, 21))
        R = rotations.rot6d_to_matrix(self.hand_net(x, c)["rot6d"])                       # (2B, 16, 3, 3)
        R[:B] *= MIRROR[:, None] * MIRROR[None, :]                              # left: M R M
        R = R.reshape(2, B, 16, 3, 3).transpose(1, 0, 2, 3, 4)
        fingers = R[:, :, 1:]
        return {"rot6d": rotations.matrix_to_rot6d(fingers),
                "wrist_global": np.ascontiguousarray(R[:, :, 0])}
