"""The focal length from the scene: vanishing points of the background's straight edges.

The body alone cannot tell the focal length (:mod:`.focal`: a detector's keypoints differ from the
model's joints by centimetres, as large as the perspective of a person a few metres away).  Most
footage also shows a room, a court, a street or a building, whose edges run along two or three
mutually orthogonal directions (a "Manhattan" scene).  Parallel edges meet in the image at a
vanishing point ``v = K d``; two orthogonal directions ``d_i . d_j = 0`` give, with the principal
point ``c`` at the image centre and square pixels,

    f^2 = -(v_i - c) . (v_j - c)                                                  (Caprile & Torre 1990)

The pipeline, all pure functions:

* :func:`line_segments`: OpenCV's LSD on the grey image (longer side at most ``max_side`` px), the
  segments of at least ``min_length`` of the longer side, outside the person's box.
* :func:`vanishing_points`: sequential RANSAC in the image (no focal needed): hypotheses are the
  intersections of two segments, a segment supports a point when its direction is within
  ``angle_tol_deg`` of the line from its midpoint to the point, support = summed length; the point
  is refined on its supporters (weighted least squares on the homogeneous lines), they are removed,
  and the next point is searched.  Points at infinity (parallel edges in the image) are kept as such.
* :func:`focal_from_vanishing_points`: every triple of points is a candidate Manhattan frame.  Each
  pair of finite points measures ``log f`` with a std that combines a bootstrap over the points'
  segments with a systematic :data:`DIRECTION_ERROR_DEG` on each point's direction (a pair through a
  far point measures almost nothing).  A triple counts when at least :data:`MIN_MEASUREMENTS` of its
  pairs measure ``log f`` to :data:`PAIR_MAX_STD` and agree (chi-square), its pairs through a point at
  infinity are orthogonal within :data:`ORTHO_TOL_DEG`, and each point has at least
  :data:`MIN_RELATIVE_SUPPORT` of the strongest point's support.  The best-supported triple gives the
  focal (inverse-variance mean) and the scene's vertical (:func:`scene_up`).
* :func:`frame_focal`: the three on one frame.  :func:`combine_frames`: a clip's frames, used when at
  least half of them give a focal and they agree; :class:`SceneFocalSampler` measures the frames at
  :data:`SAMPLE_SHARES` of the clip's calibration window in a worker thread beside the capture.  The capture uses the result
  (``camera_source = "scene"``) when its std of ``log f`` is at most :data:`.focal.MAX_LOG_F_STD`, the
  gate the body estimate has (:meth:`.align_clip.ClipAlignment.calibrate`; live, on the first frame).

The rules that keep it from guessing, and what they were measured on, are in docs/fidelity.md ("Focal
length from the scene").

Coordinates: pixels, ``x`` right, ``y`` down, principal point at the image centre.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Final, Sequence

import numpy as np

from .focal import FOV_RANGE_DEG, MAX_LOG_F_STD

log = logging.getLogger(__name__)

#: segments shorter than this share of the image's longer side are ignored
MIN_LENGTH: Final[float] = 0.025
#: a segment supports a vanishing point within this angle (degrees)
ANGLE_TOL_DEG: Final[float] = 1.5
#: two directions count as orthogonal within this angle (degrees)
ORTHO_TOL_DEG: Final[float] = 3.0
#: a vanishing point's direction is taken to be off by this much (degrees; lens distortion, clustered edges)
DIRECTION_ERROR_DEG: Final[float] = 1.0
#: a vanishing point needs this many supporting segments
MIN_SUPPORT: Final[int] = 8
#: each point of a triple has at least this share of the strongest point's support
MIN_RELATIVE_SUPPORT: Final[float] = 0.2
#: a triple is used when at least this many of its pairs measure the focal (and agree): one pair alone
#: is not checked by anything (a fridge's bottles converging near the centre gave -30 % on one)
MIN_MEASUREMENTS: Final[int] = 2
#: ... each with a std of log f of at most this (a pair through a far point agrees with anything)
PAIR_MAX_STD: Final[float] = 0.15
#: the scene's vertical (:func:`scene_up`) is the triple's direction within this of the camera's y axis
MAX_VERTICAL_TILT_DEG: Final[float] = 35.0
#: :func:`horizon_line`: its points within this many image heights of the centre row, the line through
#: them within this angle of the image's horizontal
HORIZON_MAX_OFFSET: Final[float] = 2.0
HORIZON_MAX_TILT_DEG: Final[float] = 10.0
#: :func:`combine_frames`: the frames' horizons agree within this share of the image height at the centre
HORIZON_AGREE: Final[float] = 0.05
#: the clip's frames measured: these shares of its calibration window (the frames its calibration
#: waits for), so that a 50 fps clip gets as many as a 12 fps one
SAMPLE_SHARES: Final[tuple[float, ...]] = (0.0, 1.0 / 3.0, 2.0 / 3.0)
#: vanishing points searched per frame
MAX_VPS: Final[int] = 4


@dataclass(frozen=True)
class VanishingPoint:
    """``point (3,)`` homogeneous px (unit norm in the conditioned frame; ``point[2] == 0`` at
    infinity), ``inliers (N,)`` bool over the frame's segments, ``support`` summed length px."""

    point: np.ndarray
    inliers: np.ndarray
    support: float


@dataclass(frozen=True)
class SceneFocal:
    """``focal`` px or None (not measurable), ``log_std`` std of ``log f``, ``pairs`` orthogonal
    pairs used, ``frames`` frames that gave an estimate, ``per_frame`` their (focal, log_std).
    ``up (3,)``: the scene's vertical, a unit vector in the camera frame (x right, y down, z forward;
    ``up[1] < 0``), when one of the triple's directions is within :data:`MAX_VERTICAL_TILT_DEG` of the
    image's vertical, else None.  ``horizon (3,)``: the image line ``a x + b y + c = 0`` (px, ``b = 1``)
    through the two strongest points that lie on a near-horizontal line (:func:`horizon_line`): the
    vanishing line of the ground, whatever the focal; None when there is none."""

    focal: float | None
    log_std: float
    pairs: int = 0
    frames: int = 0
    per_frame: tuple = field(default_factory=tuple)
    up: np.ndarray | None = None
    horizon: np.ndarray | None = None


def line_segments(image_bgr: np.ndarray, exclude: Sequence[Sequence[float]] = (), max_side: int = 720,
                  min_length: float = MIN_LENGTH) -> np.ndarray:
    """Straight edges of ``image_bgr (H, W, 3)`` uint8 -> ``(N, 4)`` float64 ``x1, y1, x2, y2`` px of
    the full image, at least ``min_length`` x the longer side, none with its midpoint in one of the
    ``exclude`` boxes ``(x, y, w, h)`` px (the person: limbs are straight too)."""
    import cv2

    H, W = image_bgr.shape[:2]
    s = min(1.0, max_side / max(H, W))
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    if s < 1.0:
        gray = cv2.resize(gray, (max(1, round(W * s)), max(1, round(H * s))), interpolation=cv2.INTER_AREA)
    lines = cv2.createLineSegmentDetector(cv2.LSD_REFINE_STD).detect(gray)[0]
    if lines is None:
        return np.zeros((0, 4))
    seg = lines.reshape(-1, 4).astype(np.float64) / s
    length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    keep = length >= min_length * max(H, W)
    mid = 0.5 * (seg[:, :2] + seg[:, 2:])
    for box in exclude:
        x, y, w, h = (float(b) for b in box)
        if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
            continue
        keep &= ~((mid[:, 0] >= x) & (mid[:, 0] <= x + w) & (mid[:, 1] >= y) & (mid[:, 1] <= y + h))
    return seg[keep]


def _conditioned(seg: np.ndarray, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Segments in the conditioned frame (centre at the image centre, longer side / 2 = 1) ->
    ``lines (N, 3)`` (unit normal in the first two), ``mid (N, 2)``, ``dir (N, 2)`` unit, and the scale."""
    W, H = image_size
    scale = 0.5 * max(W, H)
    p = (seg.reshape(-1, 2, 2) - np.array([W / 2.0, H / 2.0])) / scale
    a, b = p[:, 0], p[:, 1]
    d = b - a
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    normal = np.stack([-d[:, 1], d[:, 0]], 1)
    lines = np.concatenate([normal, -(normal * a).sum(1, keepdims=True)], 1)
    return lines, 0.5 * (a + b), d, scale


def _angle_sin(points: np.ndarray, mid: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """|sin| of the angle between each segment's direction and the line from its midpoint to each
    point: ``points (M, 3)`` homogeneous, ``mid``/``direction (N, 2)`` -> ``(M, N)``."""
    to = points[:, None, :2] - points[:, None, 2:3] * mid[None]                  # (M, N, 2)
    n = np.linalg.norm(to, axis=-1)
    cr = np.abs(to[..., 0] * direction[None, :, 1] - to[..., 1] * direction[None, :, 0])
    return np.where(n > 1e-12, cr / np.maximum(n, 1e-12), 1.0)


def _refine(lines: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The point ``(3,)`` (unit) nearest to weighted ``lines (N, 3)``: least eigenvector of ``sum w l l^T``."""
    A = (lines * weights[:, None]).T @ lines
    return np.linalg.eigh(A)[1][:, 0]


def vanishing_points(segments: np.ndarray, image_size: tuple[int, int], max_vps: int = MAX_VPS,
                     hypotheses: int = 600, angle_tol_deg: float = ANGLE_TOL_DEG,
                     min_support: int = MIN_SUPPORT, seed: int = 0) -> list[VanishingPoint]:
    """Sequential RANSAC (module docstring): ``segments (N, 4)`` px, ``image_size (W, H)`` -> up to
    ``max_vps`` points, strongest first, in the conditioned frame (see :func:`to_pixels`)."""
    if len(segments) < 2 * min_support:
        return []
    lines, mid, direction, _ = _conditioned(segments, image_size)
    length = np.hypot(*(segments[:, 2:] - segments[:, :2]).T)
    tol = math.sin(math.radians(angle_tol_deg))
    rng = np.random.default_rng(seed)
    free = np.ones(len(segments), bool)
    out: list[VanishingPoint] = []
    for _ in range(max_vps):
        idx = np.flatnonzero(free)
        if len(idx) < min_support:
            break
        p = length[idx] / length[idx].sum()
        ij = rng.choice(idx, size=(hypotheses, 2), p=p)
        ij = ij[ij[:, 0] != ij[:, 1]]
        cand = np.cross(lines[ij[:, 0]], lines[ij[:, 1]])
        cand /= np.maximum(np.linalg.norm(cand, axis=1, keepdims=True), 1e-12)
        ok = _angle_sin(cand, mid[idx], direction[idx]) < tol                     # (M, n)
        score = ok.astype(np.float64) @ length[idx]
        best = cand[int(np.argmax(score))]
        inl = np.zeros(len(segments), bool)
        inl[idx] = ok[int(np.argmax(score))]
        for _ in range(3):                                                        # refine, re-select
            if inl.sum() < 2:
                break
            best = _refine(lines[inl], length[inl])
            inl = free & (_angle_sin(best[None], mid, direction)[0] < tol)
        if inl.sum() < min_support:
            break
        out.append(VanishingPoint(point=best, inliers=inl, support=float(length[inl].sum())))
        free &= ~inl
    return out


def _pair_f2(p: np.ndarray, q: np.ndarray) -> float:
    """``f^2`` (conditioned units) making the directions of points ``p``, ``q (3,)`` orthogonal, or
    nan when a point is (nearly) at infinity (then the pair does not fix ``f``)."""
    w = p[2] * q[2]
    if abs(p[2]) < 1e-3 or abs(q[2]) < 1e-3:
        return float("nan")
    return float(-(p[0] * q[0] + p[1] * q[1]) / w)


def _ortho_deg(p: np.ndarray, q: np.ndarray, f: float) -> float:
    """Angle (degrees) between 90 and the angle of the directions of points ``p``, ``q`` under focal ``f``."""
    d1 = np.array([p[0], p[1], p[2] * f])
    d2 = np.array([q[0], q[1], q[2] * f])
    c = abs(float(d1 @ d2)) / max(float(np.linalg.norm(d1) * np.linalg.norm(d2)), 1e-12)
    return math.degrees(math.asin(min(1.0, c)))


def _pair_log_f(p: np.ndarray, q: np.ndarray) -> float:
    """``log f`` (conditioned) of a pair of points, nan when it fixes none or a negative ``f^2``."""
    f2 = _pair_f2(p, q)
    return 0.5 * math.log(f2) if np.isfinite(f2) and f2 > 0 else float("nan")


def _turned(p: np.ndarray, f: float, rad: float) -> list[np.ndarray]:
    """Point ``p`` with its direction under focal ``f`` turned by ``rad`` about the two axes normal to it."""
    d = np.array([p[0], p[1], p[2] * f])
    d /= np.linalg.norm(d)
    a = np.cross(d, [0.0, 0.0, 1.0] if abs(d[2]) < 0.9 else [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(d, a)
    out = []
    for ax in (a, b):
        e = d * math.cos(rad) + np.cross(ax, d) * math.sin(rad)
        out.append(np.array([e[0], e[1], e[2] / f]))
    return out


def _pair_std(p: np.ndarray, q: np.ndarray, f: float, rad: float) -> float:
    """Std of a pair's ``log f`` when each point's direction is off by ``rad`` (first-order, both axes)."""
    base = _pair_log_f(p, q)
    d2 = 0.0
    for pp in _turned(p, f, rad):
        d2 += (_pair_log_f(pp, q) - base) ** 2
    for qq in _turned(q, f, rad):
        d2 += (_pair_log_f(p, qq) - base) ** 2
    return math.sqrt(d2) if np.isfinite(d2) else float("inf")


def focal_from_vanishing_points(vps: Sequence[VanishingPoint], segments: np.ndarray,
                                image_size: tuple[int, int], fov_range_deg: tuple[float, float] = FOV_RANGE_DEG,
                                ortho_tol_deg: float = ORTHO_TOL_DEG, direction_error_deg: float = DIRECTION_ERROR_DEG,
                                bootstrap: int = 64, seed: int = 0) -> SceneFocal:
    """Focal px from the vanishing points of one frame (module docstring): for every triple of points,
    each pair of finite points is a measurement of ``log f`` whose std is that of a systematic
    ``direction_error_deg`` on each point's direction (and the bootstrap over its segments); the
    triple's focal is their inverse-variance mean, kept when they agree (chi-square) and its pairs
    through a point at infinity are orthogonal; the best-supported such triple gives the estimate (a
    lone pair is not enough: two unrelated edge directions give some focal too).  ``SceneFocal(None, inf)`` when none does."""
    lines, _, _, scale = _conditioned(segments, image_size)
    length = np.hypot(*(segments[:, 2:] - segments[:, :2]).T)
    lo = 1.0 / math.tan(math.radians(fov_range_deg[1]) / 2.0)                  # conditioned: half side = 1
    hi = 1.0 / math.tan(math.radians(fov_range_deg[0]) / 2.0)
    pts = [v.point for v in vps]
    rng = np.random.default_rng(seed)
    boots = []
    for v in vps:                                                               # bootstrap refits of each point
        idx = np.flatnonzero(v.inliers)
        boots.append([_refine(lines[pick], length[pick])
                      for pick in (rng.choice(idx, size=len(idx), replace=True) for _ in range(bootstrap))])
    rad = math.radians(direction_error_deg)
    pair = {}
    for a, b in combinations(range(len(pts)), 2):
        lf = _pair_log_f(pts[a], pts[b])
        if not (np.isfinite(lf) and math.log(lo) <= lf <= math.log(hi)):
            continue
        bs = np.array([_pair_log_f(pa, pb) for pa, pb in zip(boots[a], boots[b])])
        boot = float(np.nanstd(bs)) if np.isfinite(bs).mean() > 0.9 else float("inf")
        std = math.hypot(boot, _pair_std(pts[a], pts[b], math.exp(lf), rad))
        if np.isfinite(std) and std > 0:                                        # else it measures nothing
            pair[(a, b)] = (lf, std)
    best = None
    strongest = max(v.support for v in vps)
    for group in combinations(range(len(pts)), 3):
        if min(vps[k].support for k in group) < MIN_RELATIVE_SUPPORT * strongest:
            continue                                # a handful of texture edges is not a direction of the scene
        meas = [pair[pq] for pq in combinations(group, 2) if pq in pair]
        log.debug("triple %s: pairs (log f, std) %s", group, meas)
        if sum(m[1] <= PAIR_MAX_STD for m in meas) < MIN_MEASUREMENTS:
            continue
        lf = np.array([m[0] for m in meas])
        w = 1.0 / np.array([m[1] for m in meas]) ** 2
        mean = float((w * lf).sum() / w.sum())
        std = float(1.0 / math.sqrt(w.sum()))
        chi2, dof = float((w * (lf - mean) ** 2).sum()), len(meas) - 1     # dof >= 1: MIN_MEASUREMENTS >= 2
        if chi2 > 4.0 * dof + 1e-9:
            continue
        std *= math.sqrt(max(1.0, chi2 / dof))
        f = math.exp(mean)
        others = [pq for pq in combinations(group, 2) if pq not in pair]
        if any(_ortho_deg(pts[a], pts[b], f) > ortho_tol_deg for a, b in others):
            continue
        key = (len(group), sum(vps[k].support for k in group))
        if best is None or key > best[0]:
            best = (key, f, std, len(meas), group)
    if best is None:
        return SceneFocal(None, float("inf"))
    _, f, std, n, group = best
    return SceneFocal(f * scale, std, n, 1, up=scene_up([pts[k] for k in group], f))


def scene_up(points: Sequence[np.ndarray], f: float) -> np.ndarray | None:
    """The vertical among the directions of ``points`` (homogeneous, conditioned) under focal ``f``
    (conditioned): the one nearest the image's ``y`` axis, pointed up (``y < 0``), when within
    :data:`MAX_VERTICAL_TILT_DEG` of it; else None."""
    d = np.array([[p[0], p[1], p[2] * f] for p in points], np.float64)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    k = int(np.argmax(np.abs(d[:, 1])))
    if abs(d[k, 1]) < math.cos(math.radians(MAX_VERTICAL_TILT_DEG)):
        return None
    return -d[k] * np.sign(d[k, 1])


def to_pixels(point: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """A conditioned homogeneous point -> px ``(2,)`` (inf where it is at infinity)."""
    W, H = image_size
    if abs(point[2]) < 1e-12:
        return np.array([np.inf, np.inf])
    return point[:2] / point[2] * 0.5 * max(W, H) + np.array([W / 2.0, H / 2.0])


def frame_focal(image_bgr: np.ndarray, exclude: Sequence[Sequence[float]] = (), seed: int = 0) -> SceneFocal:
    """One frame: :func:`line_segments` -> :func:`vanishing_points` -> :func:`focal_from_vanishing_points`."""
    H, W = image_bgr.shape[:2]
    seg = line_segments(image_bgr, exclude)
    vps = vanishing_points(seg, (W, H), seed=seed)
    if len(vps) < 2:
        return SceneFocal(None, float("inf"))
    est = focal_from_vanishing_points(vps, seg, (W, H), seed=seed)
    return replace(est, horizon=horizon_line(vps, (W, H)))


def horizon_line(vps: Sequence[VanishingPoint], image_size: tuple[int, int]) -> np.ndarray | None:
    """The ground's vanishing line: through the strongest pair of finite points, each within
    :data:`HORIZON_MAX_OFFSET` image heights of the centre row, whose joining line is within
    :data:`HORIZON_MAX_TILT_DEG` of the image's horizontal (horizontal directions of the scene, a camera
    with little roll).  -> ``(a, b, c)`` px with ``b = 1`` (``y = -(a x + c)``), or None."""
    W, H = image_size
    pts = [to_pixels(v.point, image_size) for v in vps]
    ok = [i for i, p in enumerate(pts) if np.isfinite(p).all() and abs(p[1] - H / 2.0) <= HORIZON_MAX_OFFSET * H]
    tilt = math.tan(math.radians(HORIZON_MAX_TILT_DEG))
    for i, j in combinations(ok, 2):                   # strongest first
        d = pts[j] - pts[i]
        if abs(d[1]) <= tilt * abs(d[0]) and abs(d[0]) > 0:
            a = -d[1] / d[0]
            return np.array([a, 1.0, -(pts[i][1] + a * pts[i][0])])
    return None


def horizon_up(horizon: np.ndarray, K: np.ndarray) -> np.ndarray:
    """The ground's normal (unit, camera frame, pointing up: ``y < 0``) whose vanishing line is
    ``horizon (3,)`` under intrinsics ``K (3, 3)``: ``n ~ K^T l``."""
    n = np.asarray(K, np.float64).T @ np.asarray(horizon, np.float64)
    n /= np.linalg.norm(n)
    return n if n[1] < 0 else -n


def combine_frames(estimates: Sequence[SceneFocal], min_share: float = 0.5,
                   max_log_std: float | None = None, image_height: float = 1000.0) -> SceneFocal:
    """One clip's focal from its sampled frames' estimates: used when at least ``min_share`` of the
    frames gave one and they agree.  The frames of a clip see the same scene, so their errors are not
    independent: the std of ``log f`` is the median frame's, or the spread between the frames when
    that is larger; ``focal`` is None when it is above ``max_log_std`` (default: the body
    estimate's gate, :data:`.focal.MAX_LOG_F_STD`)."""
    gate = MAX_LOG_F_STD if max_log_std is None else max_log_std
    per_frame = tuple((e.focal, e.log_std) for e in estimates)
    horizon = _common_horizon(estimates, min_share, image_height)
    got = [e for e in estimates if e.focal is not None and np.isfinite(e.log_std)]
    if not got or len(got) < min_share * len(estimates):
        return SceneFocal(None, float("inf"), 0, len(got), per_frame, horizon=horizon)
    logs = np.log([e.focal for e in got])
    std = np.array([e.log_std for e in got])
    w = 1.0 / std ** 2
    mean = float((w * logs).sum() / w.sum())
    log_std = max(float(np.median(std)), float(np.sqrt((w * (logs - mean) ** 2).sum() / w.sum())))
    focal = math.exp(mean) if log_std <= gate else None
    ups = [e.up for e in got if e.up is not None]
    up = None
    if focal is not None and ups:
        u = np.mean(ups, axis=0)
        up = u / np.linalg.norm(u)
    return SceneFocal(focal, log_std, int(np.median([e.pairs for e in got])), len(got), per_frame, up=up,
                      horizon=horizon)


def _common_horizon(estimates: Sequence[SceneFocal], min_share: float, height: float) -> np.ndarray | None:
    """The frames' horizon (median line) when at least ``min_share`` of them have one and they agree
    (their rows at columns 0 and ``height`` within :data:`HORIZON_AGREE` x ``height``); else None."""
    lines = [e.horizon for e in estimates if e.horizon is not None]
    if not lines or len(lines) < min_share * len(estimates):
        return None
    L = np.stack(lines)                                             # (n, 3), b = 1: y = -(a x + c)
    rows = -(L[:, :1] * np.array([[0.0, height]]) + L[:, 2:])      # y at x = 0 and x = height
    if np.ptp(rows, axis=0).max() > HORIZON_AGREE * height:
        return None
    return np.median(L, axis=0)


def person_box(points: np.ndarray, image_size: tuple[int, int], margin: float = 0.15) -> tuple | None:
    """The ``(x, y, w, h)`` px box around ``points (P, 3)`` (px + confidence, >= 0.3 used), grown by
    ``margin`` of its size on each side, or None without points."""
    p = np.asarray(points, np.float64)
    p = p[(p[:, 2] >= 0.3) & np.isfinite(p[:, :2]).all(1)] if p.ndim == 2 and p.shape[1] >= 3 else p[:0]
    if len(p) < 2:
        return None
    lo, hi = p[:, :2].min(0), p[:, :2].max(0)
    pad = margin * (hi - lo) + 0.02 * max(image_size)
    lo, hi = lo - pad, hi + pad
    return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))


class SceneFocalSampler:
    """The scene estimate of one clip, computed beside the capture: :meth:`offer` every frame (image and
    the person's 2D points) until :meth:`result`; the frames at :data:`SAMPLE_SHARES` of the first
    ``window_s`` seconds (the calibration window: offline the shape's first frames) go to
    a background thread (:func:`frame_focal` with the person's box left out, ~45 ms of one core per
    720p-scaled frame); :meth:`result` waits for them and combines them (:func:`combine_frames`)."""

    def __init__(self, fps: float, window_s: float = 2.5, shares: Sequence[float] = SAMPLE_SHARES):
        from concurrent.futures import ThreadPoolExecutor

        self.fps = float(fps) if fps and fps > 0 else 30.0
        self._todo = sorted(float(k) * float(window_s) for k in shares)
        self._t0: float | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scene-focal")
        self._futures: list = []
        self._result: SceneFocal | None = None
        self._height = 1000.0                       # the frames' height (px), for the horizons' agreement

    def offer(self, t: float, image_bgr: np.ndarray | None, points: np.ndarray | None) -> None:
        """The clip's frame at ``t`` s (its image, the person's ``(P, 3)`` px + confidence or None)."""
        if self._result is not None or not self._todo or image_bgr is None or not np.isfinite(t):
            return
        if self._t0 is None:
            self._t0 = t
        if t - self._t0 + 0.5 / self.fps < self._todo[0]:
            return
        while self._todo and t - self._t0 + 0.5 / self.fps >= self._todo[0]:
            self._todo.pop(0)
        H, W = image_bgr.shape[:2]
        self._height = float(H)
        box = person_box(points, (W, H)) if points is not None else None
        self._futures.append((t, self._pool.submit(frame_focal, image_bgr.copy(), [box] if box else [])))

    def result(self) -> SceneFocal:
        """The clip's estimate from the frames offered so far (waits for their computation)."""
        if self._result is None:
            ests = []
            for t, fut in self._futures:
                try:
                    ests.append(fut.result())
                except Exception as exc:  # noqa: BLE001 - a frame that cannot be measured gives no estimate
                    log.warning("scene focal: the frame at %.2f s could not be measured (%s); it gives no estimate",
                                t, exc)
                    ests.append(SceneFocal(None, float("inf")))
            self._result = (combine_frames(ests, image_height=self._height) if ests
                            else SceneFocal(None, float("inf")))
            self._pool.shutdown(wait=False)
        return self._result

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
