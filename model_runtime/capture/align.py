"""Image-aligned fit: refine the IK pose so that the posed model's keypoints project onto the
detector's 2D points (issue 10).

After the IK (BodyIKNet + HandIKNet) and the Eq. 14 translation, the posed model is close to the
person in 3D but not on her in the image: the networks see only the detector's 3D keypoints, whose
errors (depth of the arms, curled fingers) the 2D points do not share.  This module refines, per
frame, the relative rotations of all 52 joints and the translation by a few Levenberg-Marquardt
(Gauss-Newton) steps on

    E = sum_k c_k rho(|pi(X_k) - m_k| / ppm)                      2D points, confidence c_k
        + w_ik   sum_j (3 - tr(R_j R_j,in^T))                       the input pose (IK, filtered)
        + w_3d   sum_b c_b |dir_b(X) - dir_b(detector 3D)|^2        the detector's 3D bone directions
        + w_t    sum_j (3 - tr(R_j R_j,pred^T)) + w_tt |t - t_pred|^2   the previous frame

(``3 - tr(R R'^T) = 2 (1 - cos angle) ~ angle^2``).  The temporal target ``pred`` is the previous
frame's correction (refined against input) carried to this frame's input, so the correction, not
the pose, is what changes slowly: motion passes, jitter of the correction does not.

``X_k`` are the 66 capture keypoints (24 body + 2 x 21 hand, :data:`output.KEYPOINT_NAMES` order) of
the posed, scaled, translated model, ``pi`` the pinhole projection with ``camera_K``; residuals are
in metres at the person's depth (``ppm`` = pixels per metre there, fixed per frame), so the weights
do not depend on the resolution or the distance.  ``rho(e) = 2 s^2 (sqrt(1 + e^2 / s^2) - 1)``
(Charbonnier: quadratic below ``s``, linear above), minimised by IRLS weights inside the steps.

Jacobians are analytic.  The unknowns are rotation increments ``w_a`` in the camera frame about
each joint (``R_a,rel <- G_parent^T exp(w_a) G_parent R_a,rel``) and the translation ``t``; a
keypoint attached to joint ``j`` moves by ``w_a x (X_k - J_a)`` for every ancestor ``a`` of ``j``
(a vertex keypoint by its skinning weights' share of ``a``'s subtree).  The 10 finger chains are
independent given the body: their blocks are eliminated by a Schur complement, so one step costs a
69 x 69 solve (translation + 22 body joints) per frame, batched over frames.  A step is accepted
per frame only if it lowers that frame's energy: the result is never worse than its input.

The per-clip use (calibration: focal estimate and depth anchoring, temporal link, lag-free
smoothing) is :mod:`.align_clip`; the focal estimate :mod:`.focal`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from ..core.backend import cross
from ..core.lbs import forward_kinematics_rt
from ..core.rotations import axis_angle_to_matrix
from ..core.skeleton import BODY_KEYPOINT_NAMES, HAND21_NAMES, JOINT_NAMES, NUM_BETAS, NUM_BODY_JOINTS, PARENTS
from ..models.keypoints import keypoint_vertex_ids

NUM_KEYPOINTS: Final[int] = len(BODY_KEYPOINT_NAMES) + 2 * len(HAND21_NAMES)   # 66
_NB: Final[int] = len(BODY_KEYPOINT_NAMES)
#: :meth:`ImageAligner._start_translation` starts from the least-squares translation where its
#: energy is below this fraction of the given translation's
START_GAIN: Final[float] = 0.5
#: limb bones (parent, child) of the detector's 3D prior (directions), BODY_KEYPOINT_NAMES names: the
#: parent is a joint and the child moves rigidly with it, so every joint above the parent turns
#: the bone's direction by its own increment (d dir / d w_a = -[dir]x)
BONES_3D: Final[tuple[tuple[str, str], ...]] = (
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
)
#: hand bones of the same prior, (side, parent, child) in HAND21_NAMES: the hand's direction (wrist to
#: the middle finger's base) and its width (index base to pinky base), both rigid with the wrist:
#: with them the palm's normal follows the hand detector's 3D (the 2D points alone leave a hand's
#: turn about its own axis and its tilt in depth nearly free)
HAND_BONES_3D: Final[tuple[tuple[str, str, str], ...]] = tuple(
    (side, p, c) for side in ("left", "right") for p, c in (("wrist", "middle1"), ("index1", "pinky1")))
#: finger order of the 21-point hands (thumb, index, middle, ring, pinky)
_HAND_FINGERS: Final[tuple[str, ...]] = ("thumb", "index", "middle", "ring", "pinky")


def keypoint_names() -> tuple[str, ...]:
    """The 66 keypoints as model names: body keypoints, then each hand's 21 (``left_wrist``,
    ``left_thumb1`` .. ``left_pinky4``; ``*4`` are fingertip vertices)."""
    hands = tuple(f"{side}_{n}" for side in ("left", "right") for n in HAND21_NAMES)
    return tuple(BODY_KEYPOINT_NAMES) + hands


@dataclass(frozen=True)
class AlignConfig:
    """Weights (metres / radians, see the module docstring) and iterations."""

    iterations: int = 3
    smoothing_s: float = 0.04      # centred Gaussian on the result (offline): std (s) of fast parts ...
    smoothing_max_s: float = 0.08  # ... of still ones ...
    smoothing_speed: float = 0.3   # ... and the image speed between them (m/s at the person's depth)
    sigma: float = 0.03            # robust scale of the 2D residual, metres at the person's depth
    w_ik: float = 2e-3             # per body joint, rad^-2
    w_ik_fingers: float = 5e-4     # per finger joint
    w_3d: float = 5e-3             # per body bone direction (unit vectors)
    w_3d_hand: float = 5e-2        # per hand bone direction (HAND_BONES_3D)
    w_temporal: float = 1e-2       # per joint, to the previous frame's correction carried forward
    w_transl_temporal: float = 1e-2
    min_confidence: float = 0.2    # 2D points below this confidence are ignored
    damping: float = 1e-3          # LM: lambda x diag(H), x10 on a rejected step


class ModelKeypoints:
    """The 66 capture keypoints of the posed body model (joints or skinned vertices) and the
    per-keypoint share of every joint's subtree, for the Jacobians.  :meth:`set_shape` once per clip."""

    def __init__(self, body):
        vids = keypoint_vertex_ids(body)
        names = keypoint_names()
        self.is_joint = np.array([n in JOINT_NAMES for n in names])
        self.kp_joint = np.array([JOINT_NAMES.index(n) for n in names if n in JOINT_NAMES])
        self.kp_vertex = np.array([vids[n] for n in names if n not in JOINT_NAMES])
        self.joint_rows = np.nonzero(self.is_joint)[0]
        self.vertex_rows = np.nonzero(~self.is_joint)[0]
        W = np.asarray(body.weights, np.float64)[self.kp_vertex]
        self.W = W / W.sum(1, keepdims=True)                                            # (Kv, 52)
        self._pair_k, self._pair_j = np.nonzero(self.W)
        self._pair_w = self.W[self._pair_k, self._pair_j]
        self._pair_sum = (self._pair_k[None, :] == np.arange(len(self.W))[:, None]).astype(np.float64)
        self._v_template = np.asarray(body.v_template, np.float64)[self.kp_vertex]      # (Kv, 3)
        self._v_dirs = np.asarray(body.shapedirs, np.float64)[self.kp_vertex][..., :NUM_BETAS]
        self._body = body
        # A[j, a]: a is j or an ancestor of j; M[k, a]: keypoint k's share of a's subtree
        A = np.zeros((len(PARENTS), len(PARENTS)))
        for j in range(len(PARENTS)):
            a = j
            while a >= 0:
                A[j, a] = 1.0
                a = int(PARENTS[a])
        self.M = np.zeros((NUM_KEYPOINTS, len(PARENTS)))
        self.M[self.joint_rows] = A[self.kp_joint]
        self.M[self.vertex_rows] = self.W @ A
        self.parents = np.asarray(PARENTS)
        self.body_anc, self.body_anc_w = _compact(self.M[:, :NUM_BODY_JOINTS])
        self.set_shape(np.zeros(NUM_BETAS), 1.0)

    def set_shape(self, betas: np.ndarray, scale: float) -> None:
        """The clip's shape: rest joints and keypoint vertices of ``betas (<=16,)``, scale alpha."""
        b = np.asarray(betas, np.float64).reshape(-1)[:NUM_BETAS]
        self.betas, self.scale = b.copy(), float(scale)
        self.j_rest = self._body.rest_joints(b)                                          # (52, 3)
        self.v_rest = self._v_template + self._v_dirs[..., :len(b)] @ b                    # (Kv, 3)

    def pose(self, rot: np.ndarray, transl: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``rot (B, 52, 3, 3)`` relative, ``transl (B, 3)`` -> camera-frame joints ``(B, 52, 3)``,
        global rotations ``(B, 52, 3, 3)`` and keypoints ``(B, 66, 3)`` (``scale * LBS + transl``)."""
        B = rot.shape[0]
        P, G, tt = forward_kinematics_rt(rot, np.broadcast_to(self.j_rest, (B,) + self.j_rest.shape), self.parents)
        # skinned keypoint vertices: sum over the (vertex, joint) pairs with a weight
        k, j = self._pair_k, self._pair_j
        Gv = (G[:, j] @ self.v_rest[k][..., None])[..., 0] + tt[:, j]                      # (B, pairs, 3)
        verts = self._pair_sum @ (Gv * self._pair_w[:, None])                               # (B, Kv, 3)
        kps = np.empty((B, NUM_KEYPOINTS, 3))
        kps[:, self.joint_rows] = P[:, self.kp_joint]
        kps[:, self.vertex_rows] = verts
        t = transl[:, None, :]
        return self.scale * P + t, G, self.scale * kps + t


def _compact(M: np.ndarray, extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``M (K, J)`` the joints with a non-zero entry (in ``M`` or ``extra``), padded
    with joints of zero entry: ``(K, L)`` indices and ``M``'s values there (Jacobians only over
    the joints that move a point)."""
    nz = (M > 0) if extra is None else (M > 0) | (extra > 0)
    L = int(nz.sum(1).max())
    idx = np.zeros((len(M), L), np.int64)
    for k, row in enumerate(nz):
        on, off = np.nonzero(row)[0], np.nonzero(~row)[0]
        idx[k] = np.concatenate([on, off[:L - len(on)]])
    return idx, np.take_along_axis(M, idx, 1)


def _finger_layout() -> tuple[np.ndarray, np.ndarray]:
    """``(2, 5, 3)`` SMPL-H joints of each side's fingers (HAND21 finger order, base -> tip) and
    ``(2, 5, 4)`` their keypoint rows among the 66."""
    joints = np.array([[[JOINT_NAMES.index(f"{s}_{f}{i}") for i in (1, 2, 3)] for f in _HAND_FINGERS]
                       for s in ("left", "right")])
    rows = np.array([[[_NB + 21 * si + 1 + 4 * fi + i for i in range(4)] for fi in range(5)] for si in range(2)])
    return joints, rows


_FINGER_JOINTS, _FINGER_ROWS = _finger_layout()


def _arm_columns() -> np.ndarray:
    """``(2, 27)`` body-block columns (translation + the 8 joints from the pelvis to the wrist)
    that move each hand's finger keypoints: the only non-zero rows of its finger coupling."""
    out = []
    for side in ("left", "right"):
        chain, j = [], JOINT_NAMES.index(f"{side}_wrist")
        while j >= 0:
            chain.append(j)
            j = int(PARENTS[j])
        out.append([0, 1, 2] + [3 + 3 * a + i for a in sorted(chain) for i in range(3)])
    return np.array(out)


_ARM_COLS = _arm_columns()
_BODY = np.arange(NUM_BODY_JOINTS)


@dataclass
class AlignResult:
    """Refined ``rot (B, 52, 3, 3)``, ``transl (B, 3)``; ``energy_before``/``energy (B,)``;
    ``joints (B, 52, 3)`` posed, scaled joints without translation (``rec.joints``)."""

    rot: np.ndarray
    transl: np.ndarray
    energy_before: np.ndarray
    energy: np.ndarray
    joints: np.ndarray


class AlignFrames:
    """The fixed data of one :meth:`ImageAligner.fit` call (targets, weights, priors); the temporal
    targets of chained frames follow the previous frame's current estimate.  Public for the fits
    built on the same energy (:mod:`.shape_fit`): ``m (B, 66, 2)`` the detector's points px, ``c (B, 66)``
    their confidences (0 below ``min_confidence``), ``inv_ppm (B,)`` metres per pixel at the person."""

    def __init__(self, al: "ImageAligner", kp2d, transl, ik_rot, body_3d, prev_rot, prev_transl, prev_ok, chain):
        cfg = al.config
        B = kp2d.shape[0]
        self.m = kp2d[..., :2]
        c = kp2d[..., 2]
        self.c = np.where(c >= cfg.min_confidence, c, 0.0)                               # (B, 66)
        # keypoints seen on some frame of the batch (the Jacobian's rows), hands seen, and the
        # finger keypoints of those hands as indices into ``rows``
        self.sides = np.nonzero(self.c[:, _FINGER_ROWS.reshape(2, -1)].any((0, 2)))[0]
        seen = self.c.any(0)
        seen[_FINGER_ROWS[self.sides].reshape(-1)] = True
        self.rows = np.nonzero(seen)[0]
        pos = np.full(NUM_KEYPOINTS, -1)
        pos[self.rows] = np.arange(len(self.rows))
        self.finger_rows = pos[_FINGER_ROWS[self.sides]]                                  # (S, 5, 4)
        z = np.maximum(transl[:, 2], 0.3)
        self.inv_ppm = z / al.f                                                            # metres per px
        self.ik_rot, self.t_in = ik_rot, transl.copy()
        self.chain = np.zeros(B, bool) if chain is None else np.asarray(chain, bool).copy()
        self.chain[0] = False
        ok = np.zeros(B, bool) if prev_ok is None else np.asarray(prev_ok, bool)
        self.prev_rot = np.broadcast_to(np.eye(3), ik_rot.shape).copy() if prev_rot is None else np.array(prev_rot, np.float64)
        self.prev_transl = np.zeros((B, 3)) if prev_transl is None else np.array(prev_transl, np.float64)
        self.prev_w = (ok | self.chain).astype(np.float64)                               # (B,) temporal on/off
        self.body_3d = None
        if body_3d is not None and cfg.w_3d > 0:
            if body_3d.shape[1] < NUM_KEYPOINTS:                  # body only: no hand directions
                body_3d = np.concatenate([body_3d, np.zeros((B, NUM_KEYPOINTS - body_3d.shape[1], 3))], 1)
            d = body_3d[:, al._bone_c] - body_3d[:, al._bone_p]                            # (B, nb, 3)
            n = np.linalg.norm(d, axis=-1, keepdims=True)
            conf = np.minimum(c[:, al._bone_c], c[:, al._bone_p]) * (n[..., 0] > 1e-6)
            self.body_3d = d / np.maximum(n, 1e-9)
            w = np.where(np.arange(d.shape[1]) < len(BONES_3D), cfg.w_3d, cfg.w_3d_hand)
            self.w3 = w * np.where(conf >= cfg.min_confidence, conf, 0.0)                  # (B, nb)

    def follow(self, rot: np.ndarray, transl: np.ndarray) -> None:
        """Chained frames: the temporal target is the previous frame's current correction carried
        to this frame's input (``R_prev R_in,prev^T R_in``, ``t_prev - t_in,prev + t_in``)."""
        if self.chain.any():
            i = np.nonzero(self.chain)[0]
            self.prev_rot[i] = rot[i - 1] @ np.swapaxes(self.ik_rot[i - 1], -1, -2) @ self.ik_rot[i]
            self.prev_transl[i] = transl[i - 1] - self.t_in[i - 1] + self.t_in[i]


class ImageAligner:
    """Batched image-aligned refinement (see the module docstring).

    Args:
        keypoints: the model's keypoints with the clip's shape set.
        K: camera intrinsics ``(3, 3)``.
        config: weights and iterations.
    """

    def __init__(self, keypoints: ModelKeypoints, K: np.ndarray, config: AlignConfig | None = None):
        self.kp, self.config = keypoints, config or AlignConfig()
        self.set_camera(K)
        bn, hn = list(BODY_KEYPOINT_NAMES), list(HAND21_NAMES)
        hand_row = lambda side, n: _NB + len(hn) * ("left", "right").index(side) + hn.index(n)   # noqa: E731
        self._bone_p = np.array([bn.index(p) for p, _ in BONES_3D] + [hand_row(s, p) for s, p, _ in HAND_BONES_3D])
        self._bone_c = np.array([bn.index(c) for _, c in BONES_3D] + [hand_row(s, c) for s, _, c in HAND_BONES_3D])
        self._bone_m = keypoints.M[self._bone_p, :NUM_BODY_JOINTS].copy()                 # (nb, 22) 0/1
        # a hand bone's direction is the wrist's to turn: its step ignores the arm and the spine
        # above (they follow the 2D points and the arm bones; with them the hand's stronger prior
        # pulled the shoulders), so the prior acts on the hand's orientation only
        for i, (side, _, _) in enumerate(HAND_BONES_3D):
            row = len(BONES_3D) + i
            self._bone_m[row] = 0.0
            self._bone_m[row, JOINT_NAMES.index(f"{side}_wrist")] = 1.0

    def set_camera(self, K: np.ndarray) -> None:
        K = np.asarray(K, np.float64)
        self.K = K
        self.f = float(K[0, 0])
        self.fxy = np.array([K[0, 0], K[1, 1]])             # focal lengths (px)
        self.principal = np.array([K[0, 2], K[1, 2]])       # principal point (px)

    # ------------------------------------------------------------------ public
    def fit(self, rot: np.ndarray, transl: np.ndarray, kp2d: np.ndarray, body_3d: np.ndarray | None = None,
            prev_rot: np.ndarray | None = None, prev_transl: np.ndarray | None = None,
            prev_ok: np.ndarray | None = None, chain: np.ndarray | None = None,
            frozen: np.ndarray | None = None, unsure: np.ndarray | None = None,
            iterations: int | None = None) -> AlignResult:
        """Refine frames.

        Args:
            rot: ``(B, 52, 3, 3)`` relative rotations from the IK (also the IK prior).
            transl: ``(B, 3)`` translation (Eq. 14), metres, camera frame.
            kp2d: ``(B, 66, 3)`` detector points px + confidence (capture-file keypoint order).
            body_3d: ``(B, 24, 3)`` the detector's 3D body keypoints (any origin), or ``(B, 66, 3)``
                with the hands' 3D keypoints after them (each hand any origin: only directions
                within a hand are used), or None.
            prev_rot, prev_transl, prev_ok: ``(B, 52, 3, 3)``, ``(B, 3)``, ``(B,)`` bool: the
                previous frame's refined values (temporal prior where ``prev_ok``), or None.
            chain: ``(B,)`` bool: frame i follows frame i - 1 of the batch, whose current estimate
                is its temporal target (updated every iteration).
            frozen: ``(B, 52)`` bool: joints whose relative rotation stays as given (unseen joints,
                held or neutral: :mod:`.visibility`), or None.
            unsure: ``(B,)`` bool: frames whose translation is a stand-in (Eq. 14 had no
                solution); they may start from the least-squares translation
                (:meth:`_start_translation`).  None: all.
            iterations: LM iterations (default ``config.iterations``).
        """
        rot = np.array(rot, np.float64)
        t = np.array(transl, np.float64)
        kp2d = np.asarray(kp2d, np.float64)
        fr = AlignFrames(self, kp2d, t, rot.copy(), None if body_3d is None else np.asarray(body_3d, np.float64),
                     prev_rot, prev_transl, prev_ok, chain)
        B = rot.shape[0]
        free = None if frozen is None or not np.any(frozen) else ~np.asarray(frozen, bool)
        lam = np.full(B, self.config.damping)
        n_it = self.config.iterations if iterations is None else int(iterations)
        fr.follow(rot, t)
        t = self._start_translation(fr, rot, t, np.ones(B, bool) if unsure is None else np.asarray(unsure, bool))
        state = self.linearise(fr, rot, t)
        e0 = self.linearise(fr, np.asarray(rot), np.asarray(transl, np.float64), jacobian=False)[0]
        energy = state[0]
        for it in range(n_it):
            _, G, H, g = state
            rot_n, t_n = self._apply(self._solve(H, g, lam, fr.sides, free), rot, t, G)
            e_n = self.linearise(fr, rot_n, t_n, jacobian=False)[0]
            ok = e_n < energy
            lam = np.where(ok, np.maximum(lam * 0.3, 1e-7), lam * 10.0)
            if ok.any():
                rot = np.where(ok[:, None, None, None], rot_n, rot)
                t = np.where(ok[:, None], t_n, t)
                fr.follow(rot, t)
                # the last iteration needs the energy only (chained targets may have moved)
                state = self.linearise(fr, rot, t, jacobian=it < n_it - 1)
                energy = state[0]
        joints, _, _ = self.kp.pose(rot, np.zeros_like(t))
        return AlignResult(rot=rot, transl=t, energy_before=e0, energy=energy, joints=joints)

    def _start_translation(self, fr: AlignFrames, rot: np.ndarray, t: np.ndarray, unsure: np.ndarray) -> np.ndarray:
        """The translation to start from, per frame the lowest energy of: the given one; the warm
        start, the temporal target (the previous frame's translation correction carried to this
        frame, for chained frames from the previous frame's start); and, for ``unsure`` frames and
        only when it more than halves the energy (:data:`START_GAIN`; Eq. 14 found no torso: a
        face-only close-up), the least-squares translation that puts the posed model's seen points
        on their rays, ``t_xy - m t_z = m X_z - X_xy`` for normalised pixels ``m`` (linear).  The
        energy's metres-per-pixel follow the start."""
        B = len(t)
        e_best = self.linearise(fr, rot, t, jacobian=False)[0]
        start = t
        has_prev = fr.prev_w > 0
        if has_prev.any():
            t_pred = np.where(has_prev[:, None], fr.prev_transl, t)                      # the temporal target
            e_pred = self.linearise(fr, rot, t_pred, jacobian=False)[0]
            use = has_prev & (e_pred < e_best)
            start, e_best = np.where(use[:, None], t_pred, start), np.where(use, e_pred, e_best)
        ok = unsure & ((fr.c > 0).sum(-1) >= 3)
        if ok.any():
            X = self.kp.pose(rot, np.zeros_like(t))[2]                                   # (B, 66, 3)
            m = (fr.m - self.principal) / self.fxy                                              # (B, 66, 2)
            c, (a, b) = fr.c, (m[..., 0], m[..., 1])
            N = np.zeros((B, 3, 3))
            N[:, 0, 0] = N[:, 1, 1] = c.sum(-1)
            N[:, 0, 2] = N[:, 2, 0] = -(c * a).sum(-1)
            N[:, 1, 2] = N[:, 2, 1] = -(c * b).sum(-1)
            N[:, 2, 2] = (c * (a * a + b * b)).sum(-1)
            rx, ry = a * X[..., 2] - X[..., 0], b * X[..., 2] - X[..., 1]
            rhs = np.stack([(c * rx).sum(-1), (c * ry).sum(-1), -(c * (a * rx + b * ry)).sum(-1)], -1)
            N[~ok] = np.eye(3)
            t_ls = np.linalg.solve(N, rhs[..., None])[..., 0]
            ok &= np.isfinite(t_ls).all(-1) & (t_ls[:, 2] > 0.05)
            e_ls = self.linearise(fr, rot, np.where(ok[:, None], t_ls, t), jacobian=False)[0]
            use = ok & (e_ls < START_GAIN * e_best)
            start = np.where(use[:, None], t_ls, start)
        moved = (start != t).any(-1)
        fr.inv_ppm = np.where(moved, np.maximum(start[:, 2], 0.3) / self.f, fr.inv_ppm)
        return start

    def energy(self, rot, transl, kp2d, body_3d=None, prev_rot=None, prev_transl=None, prev_ok=None,
               ik_rot=None) -> np.ndarray:
        """The energy ``(B,)`` of given values (arguments as :meth:`fit`; the IK prior is
        ``ik_rot``, default ``rot`` itself; no chained frames)."""
        rot = np.asarray(rot, np.float64)
        t = np.asarray(transl, np.float64)
        fr = AlignFrames(self, np.asarray(kp2d, np.float64), t, rot if ik_rot is None else np.asarray(ik_rot, np.float64),
                     None if body_3d is None else np.asarray(body_3d, np.float64), prev_rot, prev_transl, prev_ok, None)
        return self.linearise(fr, rot, t, jacobian=False)[0]

    # ------------------------------------------------------------------ the energy (also for shape_fit)
    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera points ``(..., 3)`` -> pixels ``(..., 2)`` and depths ``(...,)`` (clamped above 0)."""
        z = np.maximum(X[..., 2], 1e-6)
        return X[..., :2] / z[..., None] * self.fxy + self.principal, z

    def _parent_globals(self, G):
        """Global rotations ``(B, 52, 3, 3)`` of each joint's parent (the root's: identity)."""
        return np.concatenate([np.broadcast_to(np.eye(3), G[:, :1].shape), G[:, self.kp.parents[1:]]], 1)

    def _rot_prior(self, rot, target, Gp, w):
        """Residuals ``(B, 52, 3)`` (camera frame; None when ``Gp`` is None: energy only) and energy
        ``(B,)`` of ``w (3 - tr(R R_target^T))`` (= ``2 w (1 - cos angle)``, ``~ w angle^2``): the
        residual ``G_parent sin(angle) axis`` is half its gradient for the increments ``w_a``, ``w``
        its Gauss-Newton Hessian; ``Gp``: :meth:`_parent_globals`."""
        Q = rot @ np.swapaxes(target, -1, -2)                                              # parent frame
        energy = (w * (3.0 - Q[..., 0, 0] - Q[..., 1, 1] - Q[..., 2, 2])).sum(-1)
        if Gp is None:
            return None, energy
        e = 0.5 * np.stack([Q[..., 2, 1] - Q[..., 1, 2], Q[..., 0, 2] - Q[..., 2, 0], Q[..., 1, 0] - Q[..., 0, 1]], -1)
        r = (Gp @ e[..., None])[..., 0] * w[..., None]
        return r, energy

    def linearise(self, fr: AlignFrames, rot, t, jacobian: bool = True):
        """-> energy ``(B,)``, global rotations, and (H blocks, gradients) of the GN step: ``H = (Hbb
        (B, 69, 69) translation + body joints, Hbf, Hff)``, ``g = (gb (B, 69, 1), gf)``; ``(None, None)``
        with ``jacobian=False``."""
        cfg = self.config
        J, G, X = self.kp.pose(rot, t)
        u, z = self.project(X)
        d = (u - fr.m) * fr.inv_ppm[:, None, None]                                          # metres (B, 66, 2)
        d2 = (d * d).sum(-1)
        s2 = cfg.sigma ** 2
        root = np.sqrt(1.0 + d2 / s2)
        energy = (fr.c * 2.0 * s2 * (root - 1.0)).sum(-1)
        nj = rot.shape[1]
        w_rot = np.full(nj, cfg.w_ik)
        w_rot[NUM_BODY_JOINTS:] = cfg.w_ik_fingers
        w_rot = np.broadcast_to(w_rot, rot.shape[:2])                                      # (B, 52)
        w_tmp = cfg.w_temporal * np.broadcast_to(fr.prev_w[:, None], rot.shape[:2])
        Gp = self._parent_globals(G) if jacobian else None     # energy only: no residuals needed
        r_ik, e_ik = self._rot_prior(rot, fr.ik_rot, Gp, w_rot)
        energy = energy + e_ik
        r_t, e_t = self._rot_prior(rot, fr.prev_rot, Gp, w_tmp)
        dt = t - fr.prev_transl
        pw = fr.prev_w
        energy = energy + e_t + pw * cfg.w_transl_temporal * (dt * dt).sum(-1)
        if fr.body_3d is not None:
            b = X[:, self._bone_c] - X[:, self._bone_p]
            bl = np.linalg.norm(b, axis=-1, keepdims=True)
            bh = b / np.maximum(bl, 1e-9)
            r3 = bh - fr.body_3d
            energy = energy + (fr.w3 * (r3 * r3).sum(-1)).sum(-1)
        if not jacobian:
            return energy, G, None, None
        B = rot.shape[0]
        rows, sides = fr.rows, fr.sides
        Xr = X[:, rows]
        A, Jb = self.body_jacobian(fr, J, X, u, z, rows)                                   # (B, R, 2, 3), (B, R, 2, 69)
        wk = fr.c[:, rows] / root[:, rows]                                                 # IRLS (B, R)
        wr = np.repeat(wk, 2, axis=1).astype(np.float32)                                    # (B, 2R)
        Jb2 = Jb.reshape(B, 2 * len(rows), -1)
        JbWT = np.swapaxes(Jb2 * wr[..., None], 1, 2)
        Hbb = (JbWT @ Jb2).astype(np.float64)                                              # (B, 69, 69)
        gb = (JbWT @ d[:, rows].reshape(B, -1, 1).astype(np.float32)).astype(np.float64)   # (B, 69, 1)
        # fingers of the hands seen in the batch: (B, S, 5, 4 kp, 2, 3 joints x 3)
        fj = _FINGER_JOINTS
        gf = np.zeros((B, 2, 5, 9, 1))
        Hff = np.zeros((B, 2, 5, 9, 9))
        Hbf = None
        if len(sides):
            fr_rows = fr.finger_rows                                                       # (S, 5, 4) into rows
            frj = fj[sides]
            Df = J[:, frj][:, :, :, None, :, :] - Xr[:, fr_rows][:, :, :, :, None, :]     # (B, S, 5, 4, 3, 3)
            Mf = self.kp.M[_FINGER_ROWS[sides][..., :, None], frj[..., None, :]]          # (S, 5, 4, 3)
            Jf = cross(A[:, fr_rows][..., :, None, :], Df[..., None, :, :]) * Mf[None, :, :, :, None, :, None]
            Jf = Jf.reshape(B, len(sides), 5, 8, 9)
            wf = np.repeat(wk[:, fr_rows], 2, axis=-1)                                     # (B, S, 5, 8)
            JfWT = np.swapaxes(Jf * wf[..., None], -1, -2)
            Hff[:, sides] = JfWT @ Jf
            gf[:, sides] = JfWT @ d[:, rows][:, fr_rows].reshape(B, len(sides), 5, 8, 1)
            cols = _ARM_COLS[sides]                                                         # (S, 27)
            Jbf = Jb[:, fr_rows].reshape(B, len(sides), 5, 8, -1)
            Jbf = np.take_along_axis(Jbf, cols[None, :, None, None, :], -1)                # the arm's columns
            Hbf = np.swapaxes(Jbf * wf[..., None], -1, -2) @ Jf                            # (B, S, 5, 27, 9)
        # priors on rotations: identity Jacobians (camera-frame residuals)
        dg = np.zeros((B, 3 + 3 * NUM_BODY_JOINTS))
        gb[:, 3:, 0] += (r_ik + r_t)[:, :NUM_BODY_JOINTS].reshape(B, -1)
        dg[:, 3:] += np.repeat((w_rot + w_tmp)[:, :NUM_BODY_JOINTS], 3, axis=1)
        gf[..., 0] += (r_ik + r_t)[:, fj].reshape(B, 2, 5, 9)
        gb[:, :3, 0] += cfg.w_transl_temporal * pw[:, None] * dt
        dg[:, :3] += cfg.w_transl_temporal * pw[:, None]
        idx = np.arange(Hbb.shape[-1])
        Hbb[:, idx, idx] += dg
        fi = np.arange(9)
        Hff[..., fi, fi] += np.repeat((w_rot + w_tmp)[:, fj], 3, axis=-1)
        if fr.body_3d is not None:
            # d bh / d w_a = -[bh]x for the parent joint and every joint above it (BONES_3D)
            nb = len(self._bone_c)
            Jd = np.zeros((B, nb, 3, 3 + 3 * NUM_BODY_JOINTS))
            Jd[..., 3:] = (-_skew(bh)[:, :, :, None, :] * self._bone_m[None, :, None, :, None]).reshape(B, nb, 3, -1)
            Jd = Jd.reshape(B, 3 * nb, -1)
            JwT = np.swapaxes(Jd * np.repeat(fr.w3, 3, axis=1)[..., None], 1, 2)
            Hbb += JwT @ Jd
            gb += JwT @ r3.reshape(B, -1, 1)
        return energy, G, (Hbb, Hbf, Hff), (gb, gf)

    def body_jacobian(self, fr: AlignFrames, J, X, u, z, rows, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
        """The 2D term's Jacobian at keypoints ``rows (R,)``: ``A (B, R, 2, 3)``, d(metres at the
        person)/dX, and ``Jb (B, R, 2, 69)`` (``dtype``) over the translation and the 22 body joints'
        rotation increments; ``J (B, 52, 3)`` joints, ``X (B, 66, 3)`` keypoints, ``u``/``z`` their
        pixels and depths (:meth:`project`)."""
        B = len(J)
        Xr, ur, zr = X[:, rows], u[:, rows], z[:, rows]
        A = np.zeros((B, len(rows), 2, 3))
        A[..., 0, 0] = self.fxy[0] / zr
        A[..., 1, 1] = self.fxy[1] / zr
        A[..., :, 2] = -(ur - self.principal) / zr[..., None]
        A *= fr.inv_ppm[:, None, None, None]
        # d X_k / d w_a = M_ka (J_a - X_k) x . ; rows a_r . (D x w) = (a_r x D) . w, over the
        # joints that move X_k only (anc); laid out (B, R, 69, 2) for the scatter
        anc, anc_w = self.kp.body_anc[rows], self.kp.body_anc_w[rows]                      # (R, L)
        D = J[:, anc] - Xr[:, :, None, :]                                                  # (B, R, L, 3)
        val = cross(A[:, :, None, :, :], D[:, :, :, None, :]) * anc_w[None, :, :, None, None]   # (B, R, L, 2, 3)
        JbT = np.zeros((B, len(rows), 3 + 3 * NUM_BODY_JOINTS, 2), dtype)
        JbT[:, :, :3] = np.swapaxes(A, -1, -2)
        cidx = 3 + 3 * anc[..., None] + np.arange(3)                                       # (R, L, 3)
        JbT[:, np.arange(len(rows))[:, None, None], cidx] = np.swapaxes(val, -1, -2)
        return A, np.swapaxes(JbT, -1, -2)

    def _solve(self, H, g, lam, sides, free=None):
        """LM step by the Schur complement of the (block-diagonal) finger blocks of the ``sides``
        seen (the others hold only their priors: diagonal); joints not ``free`` ``(B, 52)`` get
        no increment (their rows and columns become the identity)."""
        Hbb, Hbf, Hff = H
        gb, gf = g
        fi, ib = np.arange(9), np.arange(Hbb.shape[-1])
        if free is not None:
            mb = np.concatenate([np.ones((len(free), 3), bool), np.repeat(free[:, :NUM_BODY_JOINTS], 3, 1)], 1)
            mf = np.repeat(free[:, _FINGER_JOINTS], 3, -1)                                  # (B, 2, 5, 9)
            Hbb = Hbb * (mb[:, :, None] & mb[:, None, :]) + np.eye(Hbb.shape[-1]) * ~mb[:, None, :]
            Hff = Hff * (mf[..., :, None] & mf[..., None, :]) + np.eye(9) * ~mf[..., None, :]
            if Hbf is not None:
                mbs = mb[:, _ARM_COLS[sides]]                                               # (B, S, 27)
                Hbf = Hbf * (mbs[:, :, None, :, None] & mf[:, sides][..., None, :])
            gb, gf = gb * mb[..., None], gf * mf[..., None]
        Hbb = Hbb.copy()
        Hbb[:, ib, ib] += lam[:, None] * Hbb[:, ib, ib] + 1e-9
        Hff = Hff.copy()
        Hff[..., fi, fi] += lam[:, None, None, None] * Hff[..., fi, fi] + 1e-9
        df = -gf / Hff[..., fi, fi][..., None]                                             # prior-only fingers
        if Hbf is None:
            return -np.linalg.solve(Hbb, gb)[..., 0], df[..., 0]
        Hs_inv = np.linalg.inv(Hff[:, sides])                                              # (B, S, 5, 9, 9)
        HbfHi = Hbf @ Hs_inv                                                                # (B, S, 5, 27, 9)
        red = (HbfHi @ np.swapaxes(Hbf, -1, -2)).sum(2)                                     # (B, S, 27, 27)
        red_g = (HbfHi @ gf[:, sides]).sum(2)                                               # (B, S, 27, 1)
        S, rhs = Hbb.copy(), gb.copy()
        for i, c in enumerate(_ARM_COLS[sides]):
            S[:, c[:, None], c[None, :]] -= red[:, i]
            rhs[:, c] -= red_g[:, i]
        db = -np.linalg.solve(S, rhs)                                                      # (B, 69, 1)
        dbs = np.stack([db[:, c] for c in _ARM_COLS[sides]], 1)                            # (B, S, 27, 1)
        df[:, sides] = -Hs_inv @ (gf[:, sides] + np.swapaxes(Hbf, -1, -2) @ dbs[:, :, None])
        return db[..., 0], df[..., 0]

    def _apply(self, step, rot, t, G):
        """Apply increments: ``R_a <- G_p^T exp(w_a) G_p R_a`` (root: ``exp(w) R``), ``t += dt``."""
        db, df = step
        B = rot.shape[0]
        w = np.zeros((B, rot.shape[1], 3))
        w[:, :NUM_BODY_JOINTS] = db[:, 3:].reshape(B, NUM_BODY_JOINTS, 3)
        w[:, _FINGER_JOINTS.reshape(-1)] = df.reshape(B, -1, 3)
        w_local = (np.swapaxes(self._parent_globals(G), -1, -2) @ w[..., None])[..., 0]
        return axis_angle_to_matrix(w_local) @ rot, t + db[:, :3]


def _skew(v: np.ndarray) -> np.ndarray:
    """``(..., 3)`` -> cross-product matrices ``(..., 3, 3)`` (``_skew(a) @ b = a x b``)."""
    z = np.zeros(v.shape[:-1])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)
