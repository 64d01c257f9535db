"""Camera intrinsics and global translation from a known bone length (paper Sec. 3.2.5, Eq. 14).

Monocular keypoints are root-relative; the absolute depth follows from the
camera matrix ``C`` and the length ``l_cp`` of a bone from parent ``p`` to
child ``c``::

    l_cp = || C^-1 z_p [u_p v_p 1]^T - C^-1 (z_p + d_c - d_p) [u_c v_c 1]^T ||      (Eq. 14)

With ``a = C^-1 [u_p v_p 1]``, ``b = C^-1 [u_c v_c 1]`` and ``delta = d_c - d_p``
this is the quadratic ``A z^2 + B z + C0 = 0`` in ``z = z_p``::

    A  = |a - b|^2,   B = -2 delta (a - b).b,   C0 = delta^2 |b|^2 - l^2

We take the 3D bone (``l`` and ``delta``) from the *posed body model* with the
clip's shape beta and scale alpha, so length and depth offset are consistent
with the skeleton that is finally animated.  Robustness:

* several rigid torso bones (shoulder-hip on both sides, the two diagonals,
  shoulder and hip widths) each give an estimate; they are combined by a
  weighted median (weights: keypoint confidence times projected bone length in
  px: longer bones in the image give relatively more precise depth);
* the physically valid root is chosen: both endpoints in front of the camera
  (``z_p > 0`` and ``z_p + delta > 0``); when both roots are valid (a bone
  nearly along the viewing ray) the one nearer the previous frame's depth is
  used and the bone's weight is cut; a negative discriminant (noisy 2D longer
  than the bone can project) uses the least-squares depth ``-B / 2A``;
* a consensus step drops the bones that disagree with the best-supported
  estimate (its reprojection of all joint keypoints), so one wrong keypoint
  cannot move the median;
* if no torso bone is visible, limb bones (upper arms, thighs) and, when the posed model's face
  keypoints are given, the head's rigid bones (ears, eyes, nose: :data:`HEAD_BONES`) are used: a
  face filling the frame (talking head, selfie) has no shoulders in it, and MediaPipe's guessed
  shoulders below the image are a small person's; with the confidences gated by the image frame
  (:func:`eq14_confidence`) they are not taken, and the head's own size sets the depth.

Intrinsics: ``--fov`` (degrees across the *longer* image side, principal point
at the image centre; default :data:`DEFAULT_FOV_DEG` = 60, a typical webcam/phone
main camera) or a calibration file (:func:`load_calibration`).
"""
from __future__ import annotations

from typing import Final, Sequence

import numpy as np

from ..core.options import DEFAULT_FOV_DEG  # noqa: F401 - the one documented default lives in options
from ..core.skeleton import BODY_KEYPOINT_NAMES, JOINT_NAMES
from ..geometry.camera import intrinsics_from_fov, load_calibration  # noqa: F401 - moved to geometry

#: rigid torso bones (parent, child) in BODY_KEYPOINT_NAMES names, all SMPL-H joints
TORSO_BONES: Final[tuple[tuple[str, str], ...]] = (
    ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
    ("left_hip", "right_shoulder"), ("right_hip", "left_shoulder"),
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
)
#: used only when no torso bone is visible
LIMB_BONES: Final[tuple[tuple[str, str], ...]] = (
    ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
    ("left_hip", "left_knee"), ("right_hip", "right_knee"),
)
#: the head's rigid bones (BODY_KEYPOINT_NAMES names; the face keypoints are skinned vertices of the
#: head, so their 3D comes from the posed model's keypoints, ``points`` of :meth:`TranslationSolver.solve`):
#: used only when no torso bone is visible, like :data:`LIMB_BONES`.  Not the ``head`` keypoint: the
#: detector's is the ears' midpoint, the model's the head joint inside the skull.
HEAD_BONES: Final[tuple[tuple[str, str], ...]] = (
    ("left_ear", "right_ear"), ("left_eye", "right_eye"), ("left_ear", "nose"), ("right_ear", "nose"),
    ("left_ear", "right_eye"), ("right_ear", "left_eye"),
)
#: the face keypoints the consensus also checks on frames that use the head bones
FACE_KEYPOINTS: Final[tuple[str, ...]] = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
MIN_CONFIDENCE: Final[float] = 0.3
AMBIGUOUS_WEIGHT: Final[float] = 0.1
#: consensus tolerance: a fraction of the typical projected bone length, at least CONSENSUS_MIN_PX
CONSENSUS_TOL: Final[float] = 0.15
CONSENSUS_MIN_PX: Final[float] = 4.0


# --------------------------------------------------------------------------- Eq. 14
def solve_parent_depth(uv_p: np.ndarray, uv_c: np.ndarray, delta: np.ndarray, length: np.ndarray,
                       K: np.ndarray, z_prior: np.ndarray | None = None,
                       K_inv: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form solution of Eq. 14 for the parent's absolute depth ``z_p``.

    Args (any common leading shape ``S``):
        uv_p, uv_c: ``(*S, 2)`` parent / child pixels.
        delta: ``(*S,)`` ``d_c - d_p``, the child's depth minus the parent's (metres).
        length: ``(*S,)`` bone length ``l_cp`` (metres).
        K: ``(3, 3)`` camera matrix.
        z_prior: ``(*S,)`` or None: depth to prefer when both roots are valid.
        K_inv: ``inv(K)`` if already known.

    Returns:
        ``z_p (*S,)`` metres (NaN where no root puts both ends in front of the
        camera) and ``quality (*S,)``: 1 for a unique valid root, ``AMBIGUOUS_WEIGHT``
        when both roots were valid, 0.5 for a least-squares depth (negative
        discriminant), 0 where invalid.
    """
    Kinv = np.linalg.inv(K) if K_inv is None else K_inv
    a, b = _rays(uv_p, Kinv), _rays(uv_c, Kinv)
    amb = a - b
    A = (amb * amb).sum(-1)
    Bq = -2.0 * delta * (amb * b).sum(-1)
    C0 = delta * delta * (b * b).sum(-1) - length * length
    disc = Bq * Bq - 4.0 * A * C0
    A_safe = np.where(A > 1e-12, A, np.nan)
    sq = np.sqrt(np.maximum(disc, 0.0))
    r_hi = (-Bq + sq) / (2.0 * A_safe)
    r_lo = (-Bq - sq) / (2.0 * A_safe)
    ok_hi = (r_hi > 0) & (r_hi + delta > 0)
    ok_lo = (r_lo > 0) & (r_lo + delta > 0)
    both = ok_hi & ok_lo
    if z_prior is not None:
        prefer_lo = np.abs(r_lo - z_prior) < np.abs(r_hi - z_prior)
    else:
        prefer_lo = np.zeros_like(both)
    z = np.where(ok_hi & ~(both & prefer_lo), r_hi, np.where(ok_lo, r_lo, np.nan))
    quality = np.where(both, AMBIGUOUS_WEIGHT, np.where(ok_hi | ok_lo, 1.0, 0.0))
    # negative discriminant: least-squares depth (vertex of the parabola), if in front
    z_ls = -Bq / (2.0 * A_safe)
    neg = (disc < 0) & (z_ls > 0) & (z_ls + delta > 0)
    z = np.where(neg, z_ls, z)
    quality = np.where(neg, 0.5, quality)
    quality = np.where(np.isfinite(z), quality, 0.0)
    return z, quality


def _rays(uv: np.ndarray, K_inv: np.ndarray) -> np.ndarray:
    """Pixels ``(..., 2)`` -> rays ``K^-1 [u v 1]`` ``(..., 3)`` (z = 1).  Written out, not a
    BLAS call: tiny matrix products through BLAS stall when other threads keep the cores busy."""
    u, v = uv[..., 0], uv[..., 1]
    return np.stack([K_inv[0, 0] * u + K_inv[0, 1] * v + K_inv[0, 2],
                     K_inv[1, 0] * u + K_inv[1, 1] * v + K_inv[1, 2],
                     K_inv[2, 0] * u + K_inv[2, 1] * v + K_inv[2, 2]], -1)


def _project(X: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera points ``(..., 3)`` -> pixels ``(..., 2)`` (NaN behind the camera)."""
    z = np.where(X[..., 2] > 1e-6, X[..., 2], np.nan)
    x, y = X[..., 0] / z, X[..., 1] / z
    return np.stack([K[0, 0] * x + K[0, 1] * y + K[0, 2], K[1, 1] * y + K[1, 2]], -1)


def eq14_confidence(confidence: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """The confidences Eq. 14 uses: the detector's ``confidence (..., K)`` where the keypoint's
    ``visibility (..., K)`` (:func:`.visibility.keypoint_visibility`: the confidence lowered outside
    the image, 0 where not detected) is the same, the visibility where it is lower.  A torso that
    MediaPipe guesses below a face close-up's frame thus weighs what its visibility says; points in
    the image keep their confidence exactly (the visibility is stored as float32)."""
    c = np.asarray(confidence, np.float64)
    v = np.asarray(visibility, np.float64)
    return np.where(v < c - 1e-6, v, c)


def weighted_median(values: np.ndarray, weights: np.ndarray, axis: int = -1) -> np.ndarray:
    """Weighted median along ``axis`` (NaN where all weights are 0); vectorised."""
    v = np.moveaxis(values, axis, -1)
    w = np.moveaxis(np.broadcast_to(weights, values.shape), axis, -1)
    v = np.where(w > 0, v, np.inf)
    order = np.argsort(v, axis=-1)
    vs = np.take_along_axis(v, order, -1)
    ws = np.take_along_axis(w, order, -1)
    cw = np.cumsum(ws, -1)
    total = cw[..., -1:]
    idx = np.argmax(cw >= 0.5 * total, axis=-1)[..., None]
    med = np.take_along_axis(vs, idx, -1)[..., 0]
    return np.where(total[..., 0] > 0, med, np.nan)


class TranslationSolver:
    """Global translation of the model from 2D keypoints and the posed model's joints.

    Args:
        K: ``(3, 3)`` camera matrix.
        keypoint_names: names of the 2D keypoint rows (default BODY_KEYPOINT_NAMES).
        bones: (parent, child) name pairs; default :data:`TORSO_BONES` then :data:`LIMB_BONES`
            and :data:`HEAD_BONES` as fallback (the head bones only when :meth:`solve` gets the
            model's face keypoints).
    """

    def __init__(self, K: np.ndarray, keypoint_names: Sequence[str] = BODY_KEYPOINT_NAMES,
                 bones: Sequence[tuple[str, str]] = TORSO_BONES,
                 fallback_bones: Sequence[tuple[str, str]] = LIMB_BONES,
                 min_confidence: float = MIN_CONFIDENCE,
                 head_bones: Sequence[tuple[str, str]] = HEAD_BONES):
        self.K = np.asarray(K, np.float64)
        self.K_inv = np.linalg.inv(self.K)
        names = list(keypoint_names)
        self.min_confidence = float(min_confidence)

        self.names = tuple(names)
        self._is_joint = np.array([n in JOINT_NAMES for n in names])
        self._kp_joint = np.array([JOINT_NAMES.index(n) if n in JOINT_NAMES else -1 for n in names], np.int64)

        def idx(pairs):
            return np.array([[names.index(p), names.index(c)] for p, c in pairs], np.int64).reshape(-1, 2)

        head = [b for b in head_bones if b[0] in names and b[1] in names]
        self._primary, self._fallback, self._head = idx(bones), idx(fallback_bones), idx(head)
        for p, c in list(bones) + list(fallback_bones):
            if p not in JOINT_NAMES or c not in JOINT_NAMES:
                raise ValueError(f"torso and limb bones must be joints: {p}, {c}")
        # keypoints checked by the consensus: every keypoint that is an SMPL-H joint, and on frames
        # that use the head bones the face keypoints (vertices of the posed model)
        face = [n for n in FACE_KEYPOINTS if n in names]
        check = [n for n in names if n in JOINT_NAMES or n in face]
        self._check_kp = np.array([names.index(n) for n in check], np.int64)
        self._check_face = np.array([n in face for n in check])
        self._bone_kp = np.concatenate([self._primary, self._fallback, self._head], 0)      # (N, 2) kp rows
        self._bone_check = np.searchsorted(self._check_kp, self._bone_kp)                  # (N, 2) into check
        assert np.array_equal(self._check_kp[self._bone_check], self._bone_kp)

    def solve(self, kp2d: np.ndarray, joints: np.ndarray, z_prior: np.ndarray | None = None,
              points: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Translation per frame.

        Args:
            kp2d: ``(B, Kp, 3)`` px + confidence, rows in ``keypoint_names`` order (confidences
                gated by the image frame: :func:`eq14_confidence`).
            joints: ``(B, 52, 3)`` the posed, scaled model joints in camera axes *without*
                translation (``alpha * FK(R, J(beta))``), metres.
            z_prior: ``(B,)`` the previous frame's ``transl[:, 2]`` (to pick between two valid
                roots) or None.
            points: ``(B, Kp, 3)`` or None: the posed, scaled model's keypoints (joints and
                skinned vertices, as ``joints``) in ``keypoint_names`` order; only the rows that
                are not joints (the face) are read.  None: no head bones.

        Returns:
            ``transl (B, 3)`` metres, camera frame (NaN rows where unsolvable) and
            ``ok (B,)`` bool.  ``alpha * FK + transl`` puts the joints on the rays of
            their 2D keypoints.
        """
        kp2d = np.asarray(kp2d, np.float64)
        X = self._model_points(np.asarray(joints, np.float64), points)                   # (B, Kp, 3)
        t, w = self._per_bone(kp2d, X, self._primary, z_prior)
        none = w.sum(-1, keepdims=True) <= 0          # fallback bones only where no torso bone
        if none.any():
            t2, w2 = self._per_bone(kp2d, X, self._fallback, z_prior)
            t3, w3 = self._per_bone(kp2d, X, self._head, z_prior)
            t = np.concatenate([t, t2, t3], 1)             # (B, N, 3)
            w = np.concatenate([w, w2 * none, w3 * none], 1)   # (B, N)
        # (else the fallback bones' weights would all be 0: they neither win nor move the median)
        w = w * self._consensus(kp2d, X, t, w, none[:, 0])
        transl = np.stack([weighted_median(t[..., i], w) for i in range(3)], -1)
        ok = np.all(np.isfinite(transl), -1)
        return transl, ok

    def _model_points(self, joints: np.ndarray, points: np.ndarray | None) -> np.ndarray:
        """``(B, Kp, 3)`` the model's 3D keypoints in keypoint order: joint rows from ``joints``,
        the others from ``points`` (NaN without them: their bones get no weight)."""
        X = np.full(joints.shape[:1] + (len(self.names), 3), np.nan)
        X[:, self._is_joint] = joints[:, self._kp_joint[self._is_joint]]
        if points is not None:
            X[:, ~self._is_joint] = np.asarray(points, np.float64)[:, ~self._is_joint]
        return X

    def _consensus(self, kp2d: np.ndarray, X: np.ndarray, t: np.ndarray, w: np.ndarray,
                   face: np.ndarray) -> np.ndarray:
        """Keep the bones that agree with the best-supported estimate, ``(B, N)`` 0/1.

        Every bone's translation reprojects all checked joints; the estimate whose
        reprojection matches the most (confidence-weighted) keypoints within a
        tolerance wins, and only bones whose two ends are among its inliers stay.
        One wrong keypoint thus cannot drag the median (it touches up to 4 of the
        6 torso bones).  The face keypoints count only on ``face (B,)`` frames (those that use
        the head bones), so frames with a torso are decided exactly as before.
        """
        N = t.shape[1]                                                   # all bones, or the torso's only
        check = self._check_kp if face.any() else self._check_kp[~self._check_face]
        bone_kp, bone_check = self._bone_kp[:N], self._bone_check[:N]
        obs = kp2d[:, check]                                            # (B, M, 3)
        X = X[:, check]                                                 # (B, M, 3)
        cand = t[:, :, None, :] + X[:, None]                            # (B, N, M, 3)
        uv = _project(cand, self.K)
        res = np.linalg.norm(uv - obs[:, None, :, :2], axis=-1)         # (B, N, M)
        px = np.linalg.norm(kp2d[:, bone_kp[:, 1], :2] - kp2d[:, bone_kp[:, 0], :2], axis=-1)
        scale = weighted_median(px, w)                                  # (B,) typical bone in px
        tol = np.maximum(CONSENSUS_MIN_PX, CONSENSUS_TOL * np.nan_to_num(scale))[:, None, None]
        conf = np.where(obs[..., 2] >= self.min_confidence, obs[..., 2], 0.0)   # (B, M)
        if face.any():
            conf = np.where(self._check_face[None] & ~face[:, None], 0.0, conf)
        inl = (res < tol) & (conf[:, None] > 0)                          # NaN compares False
        score = np.where(w > 0, (inl * conf[:, None]).sum(-1), -1.0)    # (B, N)
        best = np.argmax(score, -1)                                     # (B,)
        inl_best = np.take_along_axis(inl, best[:, None, None], 1)[:, 0]        # (B, M)
        if not face.any():                                              # rows of the joint checks
            full = np.zeros((len(t), len(self._check_kp)), bool)
            full[:, ~self._check_face] = inl_best
            inl_best = full
        ends = inl_best[:, bone_check[:, 0]] & inl_best[:, bone_check[:, 1]]   # (B, N)
        return ends.astype(np.float64)

    def _per_bone(self, kp2d, X, kp_idx, z_prior):
        """Per-bone translation estimates ``(B, N, 3)`` and weights ``(B, N)`` (0 where the model
        has no 3D for a bone's end)."""
        p2, c2 = kp2d[:, kp_idx[:, 0]], kp2d[:, kp_idx[:, 1]]          # (B, N, 3)
        P, C = X[:, kp_idx[:, 0]], X[:, kp_idx[:, 1]]                   # (B, N, 3)
        known = np.isfinite(P).all(-1) & np.isfinite(C).all(-1)
        P, C = np.where(known[..., None], P, 0.0), np.where(known[..., None], C, 0.0)
        delta = C[..., 2] - P[..., 2]
        length = np.linalg.norm(C - P, axis=-1)
        zp_prior = None
        if z_prior is not None:
            zp_prior = np.asarray(z_prior, np.float64)[:, None] + P[..., 2]
        z_p, quality = solve_parent_depth(p2[..., :2], c2[..., :2], delta, length, self.K, zp_prior, self.K_inv)
        ray_p, ray_c = _rays(p2[..., :2], self.K_inv), _rays(c2[..., :2], self.K_inv)
        # the two ends each give the translation; average them
        t = 0.5 * ((z_p[..., None] * ray_p - P) + ((z_p + delta)[..., None] * ray_c - C))
        conf = np.minimum(p2[..., 2], c2[..., 2])
        px_len = np.linalg.norm(c2[..., :2] - p2[..., :2], axis=-1)
        w = np.where((conf >= self.min_confidence) & known, conf * px_len * quality, 0.0)
        w = np.where(np.isfinite(t).all(-1), w, 0.0)
        return np.nan_to_num(t), w
