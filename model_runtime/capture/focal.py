"""The capture's camera: intrinsics from a calibration, a given field of view, or a per-clip focal
estimate (issue 10), and which of them was used (``camera_source`` in the capture file).

:func:`estimate_focal`: without a calibration the focal length is unknown (the
:data:`~model_runtime.core.options.DEFAULT_FOV_DEG` default is a guess).  The IK gives each frame's
skeleton in 3D from the detector's 3D keypoints, independently of the camera; seen through the
right focal it projects onto the detector's 2D points, through a wrong one it does not: a wrong
focal puts the camera at the wrong distance, and the near and far parts of the body (a limb
towards the camera, the depth between shoulders and hips when turned) are magnified by the wrong
ratio.  The estimate is the focal that minimises the reprojection error of the first window's
skeletons, each moved rigidly (rotation about its pelvis and translation per frame, one shared
``log f``), by Gauss-Newton with robust (Charbonnier) weights; the per-frame 6 x 6 blocks are
eliminated by a Schur complement, so the cost is a few milliseconds.  A weak prior on ``log f``
towards the default keeps it where the poses carry no depth information (a flat frontal pose);
its posterior standard deviation decides whether the estimate is used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from ..core.backend import cross
from ..core.options import DEFAULT_FOV_DEG
from ..core.rotations import axis_angle_to_matrix
from ..geometry.camera import intrinsics_from_fov, load_calibration

#: ``camera_source`` values: a calibration file, ``--fov``, the file's own metadata (:mod:`.lens`: EXIF,
#: QuickTime), the scene's vanishing points (:mod:`.scene_focal`), the per-clip estimate from the body,
#: the default field of view
CAMERA_SOURCES: Final[tuple[str, ...]] = ("calibration", "fov", "metadata", "scene", "estimated", "default")
#: estimates are kept within these fields of view (degrees across the longer image side)
FOV_RANGE_DEG: Final[tuple[float, float]] = (20.0, 110.0)
#: an estimate is used when the posterior standard deviation of log f is below this
MAX_LOG_F_STD: Final[float] = 0.08
#: systematic error of a detected keypoint against the model's (metres at the person's depth)
KEYPOINT_ERROR_M: Final[float] = 0.03
#: the first window's frames count as this many independent ones (consecutive poses are alike)
INDEPENDENT_FRAMES: Final[int] = 4
#: frames of the first window used by the estimate (evenly spaced)
MAX_FRAMES: Final[int] = 40


@dataclass
class ClipCamera:
    """The clip's intrinsics ``K (3, 3)``, where they come from (:data:`CAMERA_SOURCES`) and whether
    the focal is still to be estimated from the first frames (``pending``)."""

    K: np.ndarray
    source: str
    pending: bool = False

    def set_focal(self, f: float, source: str) -> None:
        K = self.K.copy()
        K[0, 0] = K[1, 1] = float(f)
        self.K, self.source, self.pending = K, source, False


def clip_camera(image_size: tuple[int, int], fov: float | None, calibration: str | None,
                estimate: bool, metadata_focal: float | None = None) -> ClipCamera:
    """The camera of a clip: the calibration, else ``fov``, else the focal of the file's metadata
    (``metadata_focal`` px, principal point at the centre), else the default field of view, to be
    replaced by the per-clip estimate when ``estimate``."""
    if calibration:
        return ClipCamera(load_calibration(calibration, image_size), "calibration")
    if fov is not None:
        return ClipCamera(intrinsics_from_fov(image_size, fov), "fov")
    if metadata_focal is not None:
        cam = ClipCamera(intrinsics_from_fov(image_size, DEFAULT_FOV_DEG), "metadata")
        cam.set_focal(metadata_focal, "metadata")
        return cam
    return ClipCamera(intrinsics_from_fov(image_size, DEFAULT_FOV_DEG), "default", pending=estimate)


@dataclass(frozen=True)
class FocalEstimate:
    """``focal`` px (None when not usable), ``log_std`` the posterior std of ``log f``, ``frames`` used."""

    focal: float | None
    log_std: float
    frames: int


def focal_bounds(image_size: tuple[int, int]) -> tuple[float, float]:
    """Focal lengths (px) of :data:`FOV_RANGE_DEG` for ``image_size``: (shortest, longest)."""
    half = 0.5 * max(image_size)
    return tuple(half / math.tan(math.radians(a) / 2.0) for a in FOV_RANGE_DEG[::-1])   # type: ignore[return-value]


def estimate_focal(points: np.ndarray, kp2d: np.ndarray, K: np.ndarray, image_size: tuple[int, int],
                   sigma: float = 0.03, prior: float = 1e-3, iterations: int = 15,
                   min_confidence: float = 0.5) -> FocalEstimate:
    """Focal length from skeletons and their 2D keypoints (see the module docstring).

    Args:
        points: ``(N, P, 3)`` each frame's model keypoints in the camera frame placed with ``K``
            (metres; their shape, not their placement, matters).
        kp2d: ``(N, P, 3)`` detector px + confidence (points below ``min_confidence`` are ignored).
        K: the intrinsics the points were placed with (start value, principal point, prior centre).
        sigma: robust scale (metres at the person's depth); prior: weight of ``(log f - log f0)^2``
            against the data (metres^2 per point).
    """
    X0 = np.asarray(points, np.float64)
    m = np.asarray(kp2d, np.float64)[..., :2]
    c = np.asarray(kp2d, np.float64)[..., 2]
    c = np.where(c >= min_confidence, c, 0.0)
    N = X0.shape[0]
    used = c.sum(-1) > 0
    if used.sum() < 3:
        return FocalEstimate(None, float("inf"), int(used.sum()))
    X0, m, c = X0[used], m[used], c[used]
    N = X0.shape[0]
    f0 = float(K[0, 0])
    cxy = np.array([K[0, 2], K[1, 2]])
    lo, hi = focal_bounds(image_size)
    s0 = math.log(f0)
    centre = (c[..., None] * X0).sum(1) / c.sum(1)[:, None]                   # (N, 3) rotation pivots
    # translation moves the skeleton; keep the depth so the start matches f0
    R = np.broadcast_to(np.eye(3), (N, 3, 3)).copy()
    t = np.zeros((N, 3))
    s = s0
    inv_ppm = np.maximum(centre[:, 2], 0.3) / f0                               # metres per px, fixed

    def residuals(R, t, s):
        X = ((X0 - centre[:, None]) @ np.swapaxes(R, 1, 2)) + centre[:, None] + t[:, None]
        z = np.maximum(X[..., 2], 1e-6)
        u = math.exp(s) * X[..., :2] / z[..., None] + cxy
        d = (u - m) * inv_ppm[:, None, None]
        return X, z, u, d

    def energy(d, s):
        d2 = (d * d).sum(-1)
        return float((c * 2 * sigma ** 2 * (np.sqrt(1 + d2 / sigma ** 2) - 1)).sum() + prior * (s - s0) ** 2)

    X, z, u, d = residuals(R, t, s)
    e = energy(d, s)
    lam = 1e-3
    per_frame = None
    for _ in range(iterations):
        f = math.exp(s)
        A = np.zeros(X.shape[:2] + (2, 3))
        A[..., 0, 0] = A[..., 1, 1] = f / z
        A[..., :, 2] = -(u - cxy) / z[..., None]
        A *= inv_ppm[:, None, None, None]
        Dx = centre[:, None] - X                                                # rotation about the pivot
        Jw = cross(A, Dx[:, :, None, :])                                        # (N, P, 2, 3): a_r x D
        Jf = np.concatenate([Jw, A], -1).reshape(N, -1, 6)                      # (N, 2P, 6)
        Js = ((u - cxy) * inv_ppm[:, None, None]).reshape(N, -1)                # d/d log f
        w = np.repeat(c / np.sqrt(1 + (d * d).sum(-1) / sigma ** 2), 2, axis=1)    # IRLS (N, 2P)
        r = d.reshape(N, -1)
        JfW = Jf * w[..., None]
        Hff = np.swapaxes(JfW, 1, 2) @ Jf + 1e-9 * np.eye(6)                  # (N, 6, 6)
        Hfs = (JfW * Js[..., None]).sum(1)                                      # (N, 6)
        Hss = float((w * Js * Js).sum()) + prior
        gf = (JfW * r[..., None]).sum(1)                                        # (N, 6)
        gs = float((w * Js * r).sum()) + prior * (s - s0)
        # information on log f of each frame (its own pose eliminated), with unit noise
        per_frame = (w * Js * Js).sum(1) - (Hfs * (np.linalg.inv(Hff) @ Hfs[..., None])[..., 0]).sum(1)
        Hd = Hff + lam * np.einsum("nii->ni", Hff)[..., None] * np.eye(6)
        Hinv = np.linalg.inv(Hd)
        HfsHi = (Hinv @ Hfs[..., None])[..., 0]                                 # (N, 6)
        S = Hss * (1 + lam) - float((Hfs * HfsHi).sum())
        ds = -(gs - float((HfsHi * gf).sum())) / max(S, 1e-12)
        dfr = -(Hinv @ (gf + Hfs * ds)[..., None])[..., 0]                      # (N, 6)
        R_n = axis_angle_to_matrix(dfr[:, :3]) @ R
        t_n, s_n = t + dfr[:, 3:], float(np.clip(s + ds, math.log(lo), math.log(hi)))
        Xn, zn, un, dn = residuals(R_n, t_n, s_n)
        e_n = energy(dn, s_n)
        if e_n < e:
            R, t, s, X, z, u, d, e = R_n, t_n, s_n, Xn, zn, un, dn, e_n
            lam = max(lam * 0.3, 1e-7)
            if abs(ds) < 1e-4:
                break
        else:
            lam *= 10.0
    # The keypoints' errors are systematic (where a detector puts a joint differs from the model's
    # joint by centimetres, the same way in consecutive frames), not independent noise: the
    # uncertainty of log f is that of INDEPENDENT_FRAMES typical frames with KEYPOINT_ERROR_M per point.
    info = float(np.median(per_frame)) * min(N, INDEPENDENT_FRAMES) if per_frame is not None else 0.0
    if not info > 0:
        return FocalEstimate(None, float("inf"), N)
    log_std = KEYPOINT_ERROR_M / math.sqrt(info)
    f = math.exp(s)
    return FocalEstimate(f if log_std <= MAX_LOG_F_STD else None, log_std, N)
