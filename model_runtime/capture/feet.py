"""Feet (issue 10, item 4): per-foot contact labels, the clip's ground plane, planted feet locked
and the root depth anchored by them.

The pure functions work on arrays of frames (shapes in their docstrings);
:class:`~.feet_stage.FootStage` runs them on a capture's records in file order with a bounded
lookahead.  Offline it does not hold frames: it hands each record on at once (unlocked,
provisional contact labels) and changes it in place when it decides it, ~3.5 s later; the capture
rewrites those frames in the file, so a kill loses no more than without the stage
(docs/reliability.md).

* **Ground plane** (:func:`fit_ground_plane`): a robust plane (``scipy.optimize.least_squares``,
  soft-L1) through the ankles of the planted runs (first: the runs of frames whose feet stand
  still in the image), one point per run weighted by its frames (:func:`run_means`: the frames
  of a run differ by depth noise along one viewing ray, which would tilt the plane towards it),
  with a weak prior towards the camera's ``-y`` as "up" (a person standing in one place fixes
  only one tilt of the plane), refitted on the lower envelope so that lifted feet do not pull
  it up.  Stored as ``ground_plane (4,)``: ``n . X + d`` = height above the ground in camera
  space (``n`` points up), ``d`` shifted by the model's ankle height above its soles.
* **Contact** (:func:`contact_labels`): the ankle's height above the ankle plane and the foot's
  speed in the image (the detector's 2D ankle, heel and toe, in m/s at the foot's depth: the
  image does not share the depth noise that makes the 3D ankle slide) with hysteresis
  (:func:`hysteresis`); only where the foot's ankle, heel and toe keypoints are seen and its knee
  and ankle joints are not held or neutral (a waist-up clip never gets a contact).
* **Lock** (:func:`lock_plan`): during a contact span the ankle's target is the mean of its
  positions within :data:`LOCK_HALF_WINDOW_S` in the same span across its viewing ray, and
  within :data:`LOCK_DEPTH_HALF_WINDOW_S` along it (the fit's depth of a planted foot wanders by
  centimetres from frame to frame, its image position does not): it stays put while the foot is
  planted and follows a foot that pivots; across the ray it stays within
  :data:`MAX_IMAGE_OFFSET_M` of where the image-aligned fit put the ankle on average over
  :data:`BOUND_HALF_S` either side (the lock's cost in the image is bounded by the detector's
  noise; bounded by each frame's own fitted ankle, the target zig-zagged with the fit's per-frame
  noise wherever it was held at the bound); the lock blends in over :data:`BLEND_S` (at least
  :data:`BLEND_MIN_FRAMES`) before the span and out over as long after it, so nothing pops.
  All windows are in seconds, so a clip at 12 fps is locked as one at 50.
* **Root depth** (:func:`root_correction`): across a flight (a jump, a step without contact)
  shorter than :data:`MAX_GAP_S` the root's distance along its viewing ray is interpolated
  between the planted frames on either side, so the depth does not pump with the jumps (moving
  along the ray keeps the root's projection; the rest of the image scales by a percent or two);
  the correction is smoothed over :data:`ROOT_SMOOTH_S`.  On planted frames the root is left
  where the image-aligned fit put it: moving it there to hold the feet (tried first) scaled the
  whole body's image and cost 0.1-0.4 px of body reprojection for no less foot slide, the legs
  take the locked feet's offsets instead.
* **Legs** (:func:`two_bone_ik`, :func:`apply_leg_ik`): each locked foot's offset
  is taken by an analytic two-bone IK of hip and knee in the leg's own bend plane; the ankle keeps
  its global orientation (the foot stays flat).  The knee bends or straightens by at most
  :data:`MAX_KNEE_SHIFT` (:func:`knee_shift_reach`): a nearly straight leg hardly lengthens (its
  knee would swing by centimetres per millimetre), a bent one reaches its target.  The knee may
  also turn about the hip-ankle line by up to :data:`MAX_KNEE_SWIVEL`, to where it lies nearest its
  own viewing ray (:func:`swivel_towards_ray`): the knee keeps its place in the image and its depth
  takes the locked ankle's offset (courtyard's knees 10.6/10.7 -> 9.8/9.2 px median, session 14).
"""
from __future__ import annotations

from typing import Callable, Final

import numpy as np

from ..core.rotations import axis_angle_to_matrix
from ..core.skeleton import BODY_KEYPOINT_NAMES, JOINT_NAMES

#: SMPL-H joints of the legs [left, right]
HIPS: Final[np.ndarray] = np.array([JOINT_NAMES.index("left_hip"), JOINT_NAMES.index("right_hip")])
KNEES: Final[np.ndarray] = np.array([JOINT_NAMES.index("left_knee"), JOINT_NAMES.index("right_knee")])
ANKLES: Final[np.ndarray] = np.array([JOINT_NAMES.index("left_ankle"), JOINT_NAMES.index("right_ankle")])
#: body keypoint rows of each foot ``(2, 3)``: ankle, heel, big toe [left, right]
FOOT_ROWS: Final[np.ndarray] = np.array([[BODY_KEYPOINT_NAMES.index(f"{s}_{p}") for p in ("ankle", "heel", "big_toe")]
                                         for s in ("left", "right")])
#: knee and ankle joints of each leg ``(2, 2)`` [left, right]: a foot counts as seen only where they are
_LEG_JOINTS: Final[np.ndarray] = np.stack([KNEES, ANKLES], 1)
#: contact thresholds: ankle height above the ankle plane (m) and image speed of the foot (m/s)
ON_HEIGHT: Final[float] = 0.06
OFF_HEIGHT: Final[float] = 0.12
ON_SPEED: Final[float] = 0.12
OFF_SPEED: Final[float] = 0.25
#: the image speed is measured over this long on each side of a frame (s)
SPEED_HALF_S: Final[float] = 0.1
#: a foot's keypoints count as seen at this visibility
SEEN: Final[float] = 0.5
#: the lock blends in/out over this long before/after a contact span (s), and over at least
#: BLEND_MIN_FRAMES (a one-frame ramp is a step)
BLEND_S: Final[float] = 0.1
BLEND_MIN_FRAMES: Final[int] = 2
#: a locked foot's target: the mean ankle position over the same span's frames at most this far (s)
LOCK_HALF_WINDOW_S: Final[float] = 0.5
#: ... and its distance from the camera over the frames at most this far (s): the fit's depth of a
#: planted foot wanders by centimetres from frame to frame where its image position does not
LOCK_DEPTH_HALF_WINDOW_S: Final[float] = 2.0
#: the root's depth correction (flights) is smoothed over time with this standard deviation (s)
ROOT_SMOOTH_S: Final[float] = 0.2
#: a locked ankle stays within this distance (m) across its viewing ray of where the fit put it
#: (about the detector's 2D noise on a foot, 3-6 px at 2-3 m): the lock bounds its cost in the image
MAX_IMAGE_OFFSET_M: Final[float] = 0.015
#: ... of where the fit put it on average over this long either side within the span (s)
BOUND_HALF_S: Final[float] = 0.1
#: the leg IK bends or straightens the knee by at most this much (m; :func:`two_bone_ik`), twice
#: what the ankle may move across its ray: more reach costs jitter (the knee follows the fit's
#: noisy hip), less leaves bent legs short of their targets
MAX_KNEE_SHIFT: Final[float] = 0.03
#: ... and turns the knee about the hip-ankle line by at most this much (rad) towards the knee's
#: viewing ray (:func:`swivel_towards_ray`): the knee stays on its image, its depth takes the offset
MAX_KNEE_SWIVEL: Final[float] = float(np.radians(30.0))
#: angles on each side of the knee's bend plane tried by :func:`swivel_towards_ray`
SWIVEL_STEPS: Final[int] = 15
#: the root's depth correction is interpolated across flights up to this long (s)
MAX_GAP_S: Final[float] = 0.6
#: offline, frames are decided (final labels, locks) in blocks of at least this many: the windows
#: around a block are computed once per block (they were handed on unlocked before)
LOCK_BLOCK: Final[int] = 64
#: ground plane: first fit after this many candidate frames (offline the stage decides no frame
#: until then, at most PLANE_HOLD_S), refitted every PLANE_REFIT_S seconds on the contact frames
PLANE_MIN_FRAMES: Final[int] = 10
PLANE_HOLD_S: Final[float] = 4.0
#: offline, the first plane is fitted on the still feet of the clip's first PLANE_FIRST_S (or more,
#: up to PLANE_MIN_FRAMES of them in three runs): the first moment's two feet fix one tilt only
PLANE_FIRST_S: Final[float] = 2.0
PLANE_REFIT_S: Final[float] = 5.0
#: prior weight (m per unit of tilt) of the plane's normal towards camera -y
PLANE_PRIOR: Final[float] = 0.3
#: ... and towards the scene's measured vertical when there is one (about 1-2 degrees off: a strong prior)
SCENE_PLANE_PRIOR: Final[float] = 3.0


# ----------------------------------------------------------------------------- pure functions
def hysteresis(on: np.ndarray, off: np.ndarray, initial: np.ndarray | bool = False) -> np.ndarray:
    """Two-threshold state over time, vectorised: ``(T, ...)`` bool -> ``(T, ...)`` bool.

    The state turns on where ``on``, off where ``off`` (``off`` wins where both hold), and keeps
    its previous value elsewhere; before the first decisive frame it is ``initial`` (``(...)``)."""
    on, off = np.asarray(on, bool), np.asarray(off, bool)
    decisive = on | off
    T = len(on)
    idx = np.where(decisive, np.arange(T).reshape((T,) + (1,) * (on.ndim - 1)), -1)
    last = np.maximum.accumulate(idx, axis=0)                    # last decisive frame so far
    value = np.take_along_axis(on & ~off, np.maximum(last, 0), axis=0)
    return np.where(last >= 0, value, np.broadcast_to(np.asarray(initial, bool), on.shape[1:]))


def foot_image_speed(kp2d: np.ndarray, vis: np.ndarray, depth: np.ndarray, focal: float, fps: float,
                     half: int = 1) -> np.ndarray:
    """Image speed of each foot in m/s at its depth: centred differences over ``half`` frames on
    each side (fewer at the ends), so that the detector's per-frame noise is divided by the time
    span rather than by one frame.

    kp2d ``(T, 2, 3, 2)`` px of [left, right] x (ankle, heel, toe); vis ``(T, 2, 3)``; depth
    ``(T, 2)`` m of the ankles; -> ``(T, 2)``, ``inf`` where the ankle is not seen in both frames
    of the difference (or ``T < 2``)."""
    T = len(kp2d)
    if T < 2:
        return np.full((T, 2), np.inf)
    seen = vis >= SEEN
    w = seen.astype(np.float64)
    n = np.maximum(w.sum(-1, keepdims=True), 1.0)
    p = (kp2d * w[..., None]).sum(-2) / n                          # (T, 2, 2) mean of the seen points
    ok = seen[..., 0]                                              # the ankle itself must be seen
    t = np.arange(T)
    lo, hi = np.maximum(t - half, 0), np.minimum(t + half, T - 1)
    v = (np.linalg.norm(p[hi] - p[lo], axis=-1) / (hi - lo)[:, None] * fps
         * np.maximum(depth, 0.3) / focal)
    return np.where(ok[lo] & ok[hi] & ok, v, np.inf)


def contact_labels(height: np.ndarray, speed: np.ndarray, seen: np.ndarray,
                   initial: np.ndarray | bool = False) -> np.ndarray:
    """Contact ``(T, 2)`` bool from ankle heights above the ankle plane (m), image speeds (m/s)
    and whether the foot is seen, all ``(T, 2)``: on below :data:`ON_HEIGHT` and
    :data:`ON_SPEED`, off above :data:`OFF_HEIGHT` or :data:`OFF_SPEED` or where unseen."""
    on = seen & (height < ON_HEIGHT) & (speed < ON_SPEED)
    off = ~seen | (height > OFF_HEIGHT) | (speed > OFF_SPEED)
    return hysteresis(on, off, initial)


def _plane_from_params(x: np.ndarray) -> tuple[np.ndarray, float]:
    n = np.array([x[0], -1.0, x[1]])
    s = np.linalg.norm(n)
    return n / s, float(x[2]) / s


def run_means(mask: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean position and length of each run of consecutive frames of ``mask (T, F)``:
    ``pos (T, F, 3)`` -> ``(means (R, 3), lengths (R,))`` over all columns.  A planted foot's
    frames differ mostly by the depth noise along one viewing ray; as separate points they
    would tilt a plane fit towards that ray."""
    means, lengths = [], []
    cs = np.concatenate([np.zeros((1,) + pos.shape[1:]), np.cumsum(pos, 0)])
    for f in range(mask.shape[1]):
        m = np.concatenate([[False], mask[:, f], [False]])
        start = np.nonzero(m[1:] & ~m[:-1])[0]
        stop = np.nonzero(~m[1:] & m[:-1])[0]
        means.append((cs[stop, f] - cs[start, f]) / (stop - start)[:, None])
        lengths.append(stop - start)
    return np.concatenate(means), np.concatenate(lengths)


def fit_ground_plane(points: np.ndarray, prior: float = PLANE_PRIOR, scale: float = 0.02,
                     iterations: int = 3, weights: np.ndarray | None = None,
                     up: np.ndarray | None = None) -> np.ndarray | None:
    """Robust plane through ``points (N, 3)`` (camera space, m; ``weights (N,)``, e.g. the frames
    each stands for), normal near camera ``-y``: ``(4,)`` = ``(n, d)`` with ``|n| = 1``,
    ``n . X + d`` = height above the plane, ``n`` pointing up (``n_y < 0``); None for fewer than
    3 points.  Soft-L1 least squares (``scale`` m) on
    ``(tilt_x, tilt_z, d)`` with ``prior`` x tilt as a prior, refitted ``iterations`` times on the
    points at most ``2 scale`` above the plane (the lower envelope: lifted feet are outliers).
    ``up (3,)``: the scene's measured vertical (:mod:`.scene_focal`, ``up[1] < 0``): the prior pulls the
    normal towards it with :data:`SCENE_PLANE_PRIOR` instead of towards camera ``-y``."""
    from scipy.optimize import least_squares

    centre = np.zeros(2)
    if up is not None and np.isfinite(up).all() and up[1] < -0.5:
        centre = np.array([up[0], up[2]], np.float64) / -float(up[1])      # n ~ (tilt_x, -1, tilt_z)
        prior = SCENE_PLANE_PRIOR

    P = np.asarray(points, np.float64).reshape(-1, 3)
    w = np.ones(len(P)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    ok = np.isfinite(P).all(1) & (w > 0)
    P, w = P[ok], np.sqrt(w[ok] / max(float(w[ok].mean()), 1e-12)) if ok.any() else w[ok]
    if len(P) < 3:
        return None
    x = np.array([centre[0], centre[1], 0.0])
    n0, _ = _plane_from_params(x)
    x[2] = -float(np.median(P @ n0)) * float(np.linalg.norm([x[0], -1.0, x[1]]))   # through the points' median
    keep = np.ones(len(P), bool)
    for _ in range(iterations):
        def res(x, pts=P[keep], sw=w[keep]):
            n, d = _plane_from_params(x)
            return np.concatenate([sw * (pts @ n + d), prior * (x[:2] - centre)])
        x = least_squares(res, x, loss="soft_l1", f_scale=scale).x
        n, d = _plane_from_params(x)
        h = P @ n + d
        keep = h <= 2 * scale
        if keep.sum() < 3:
            break
    n, d = _plane_from_params(x)
    return np.concatenate([n, [d]])


def lock_plan(contact: np.ndarray, pos: np.ndarray, blend: int, half_window: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame lock weight and target of one foot.

    contact ``(T,)`` bool, pos ``(T, 3)`` the ankle's positions; -> ``(w (T,), target (T, 3))``:
    ``w`` is 1 inside a contact span, ``smoothstep(1 - k / (blend + 1))`` ``k`` frames before or
    after one (the nearer span wins), else 0.  The target of a frame in a span is the mean position over the
    frames of the same span at most ``half_window`` away (so it stays put while the foot is planted:
    it moves by the detector's noise over ``2 half_window + 1`` frames, and follows a foot that
    really pivots or shuffles within the span); a blend frame takes the target of the span's
    nearest frame; 0 where ``w`` is 0."""
    T = len(contact)
    c = np.asarray(contact, bool)
    prev = np.concatenate([[False], c[:-1]])
    nxt = np.concatenate([c[1:], [False]])
    onsets = np.nonzero(c & ~prev)[0]
    ends = np.nonzero(c & ~nxt)[0]                                  # last frame of each span
    if not len(onsets):
        return np.zeros(T), np.zeros((T, 3))
    cs = np.concatenate([np.zeros((1, 3)), np.cumsum(pos, 0)])
    t = np.arange(T)
    before = np.searchsorted(onsets, t, side="right") - 1           # last span starting at or before t
    dist_prev = np.where(before >= 0, np.maximum(t - ends[np.maximum(before, 0)], 0), T + blend + 1)
    after = np.minimum(before + 1, len(onsets) - 1)                 # next span starting after t
    dist_next = np.where(onsets[after] > t, onsets[after] - t, T + blend + 1)
    w_prev = np.clip(1.0 - dist_prev / (blend + 1.0), 0.0, 1.0)
    w_next = np.clip(1.0 - dist_next / (blend + 1.0), 0.0, 1.0)
    use_next = w_next > w_prev
    w = np.maximum(w_prev, w_next)
    w = w * w * (3.0 - 2.0 * w)                                     # smoothstep: no kink at the ends
    span = np.where(use_next, after, np.maximum(before, 0))
    o, e = onsets[span], ends[span]
    tc = np.clip(t, o, e)                                           # the span's frame nearest to t
    lo = np.maximum(tc - half_window, o)
    hi = np.minimum(tc + half_window, e) + 1
    target = (cs[hi] - cs[lo]) / (hi - lo)[:, None]
    return w, np.where((w > 0)[:, None], target, 0.0)


def smooth_centred(x: np.ndarray, sigma: float) -> np.ndarray:
    """Centred Gaussian smoothing of ``x (T, ...)`` over time, ``sigma`` in frames
    (``scipy.ndimage.gaussian_filter1d``, ends reflected); ``sigma <= 0`` returns ``x``."""
    if sigma <= 0 or len(x) < 2:
        return x
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.asarray(x, np.float64), sigma, axis=0, mode="nearest")


def root_correction(w: np.ndarray, dist: np.ndarray, max_gap: int, track: np.ndarray | None = None) -> np.ndarray:
    """Correction of the root's distance along its viewing ray, ``(T,)`` m: 0 where a foot is
    locked (``w (T, 2)`` > 0: the legs take the locked feet's offsets, which leaves the image of
    the rest of the body as the fit made it); across a flight (no foot locked) between two locked
    frames at most ``max_gap`` apart, the distance ``dist (T,)`` is replaced by the straight line
    between its values there (a body in the air moves at a constant horizontal speed), so the
    depth does not pump with a jump; 0 elsewhere, and between locked frames of two tracks (``track (T,)``:
    the track number, :class:`~.tracking.PersonSwitchDetector`; two people's depths are not joined)."""
    locked = np.nonzero(w.sum(1) > 0)[0]
    c = np.zeros(len(dist))
    if len(locked) < 2:
        return c
    t = np.arange(len(c))
    k = np.searchsorted(locked, t, side="right") - 1
    p = locked[np.clip(k, 0, len(locked) - 1)]
    q = locked[np.clip(k + 1, 0, len(locked) - 1)]
    gap = (k >= 0) & (k < len(locked) - 1) & (t > p) & (t < q) & ((q - p) <= max_gap)
    if track is not None:
        gap &= track[p] == track[q]
    frac = np.where(gap, (t - p) / np.maximum(q - p, 1), 0.0)
    return np.where(gap, dist[p] + frac * (dist[q] - dist[p]) - dist, 0.0)


def _rotation_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smallest rotations taking directions ``u`` to ``v`` ``(..., 3)`` -> ``(..., 3, 3)``."""
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    axis = np.cross(u, v)
    s = np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(s, (u * v).sum(-1, keepdims=True))
    return axis_angle_to_matrix(axis / np.maximum(s, 1e-12) * angle)


def two_bone_ik(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray, target: np.ndarray,
                max_knee_shift: float = np.inf, max_swivel: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Global rotation increments ``(D_hip, D_knee)`` ``(..., 3, 3)`` that move ``ankle`` to
    ``target`` (all ``(..., 3)``) keeping the bone lengths and the knee in the leg's bend plane
    (the knee's side of the hip-target line); a target out of reach is brought to the nearest
    reachable distance.  ``max_knee_shift`` (m) limits how far the knee moves off or towards the
    hip-ankle line (how much the knee bends or straightens): near a straight leg a centimetre
    more or less of hip-ankle distance swings the knee by several, with a bent knee it moves the
    knee about as much; the rest of the offset along the leg is left (the ankle then lands on the
    hip-target line).  The knee moves by ``D_hip``; the ankle by ``D_knee D_hip`` about the moved
    knee.

    ``max_swivel`` (radians, 0 = off) lets the knee turn about the hip-target line by up to that
    much, to where it lies nearest the knee's viewing ray through the camera at the origin (the
    joints in camera space): the knee then stays where the image has it and only the depth the
    image cannot see takes the ankle's offset (:func:`swivel_towards_ray`)."""
    a = np.linalg.norm(knee - hip, axis=-1, keepdims=True)
    b = np.linalg.norm(ankle - knee, axis=-1, keepdims=True)
    ht = target - hip
    dist = np.linalg.norm(ht, axis=-1, keepdims=True)
    d = ht / np.maximum(dist, 1e-9)
    c = dist
    if np.isfinite(max_knee_shift):
        c = np.clip(c, *knee_shift_reach(a, b, knee, hip, ankle, max_knee_shift))
    c = np.clip(c, np.abs(a - b) + 1e-4, a + b - 1e-4)
    hk = knee - hip
    pole = hk - (hk * d).sum(-1, keepdims=True) * d                 # the knee's side, across the line
    ha = ankle - hip
    fallback = ha / np.maximum(np.linalg.norm(ha, axis=-1, keepdims=True), 1e-9)
    pole_alt = hk - (hk * fallback).sum(-1, keepdims=True) * fallback
    pn = np.linalg.norm(pole, axis=-1, keepdims=True)
    pole = np.where(pn > 1e-6, pole, pole_alt)
    pole = pole / np.maximum(np.linalg.norm(pole, axis=-1, keepdims=True), 1e-12)
    x = (a ** 2 + c ** 2 - b ** 2) / (2 * c)
    y = np.sqrt(np.maximum(a ** 2 - x ** 2, 0.0))
    if max_swivel > 0:
        pole = swivel_towards_ray(hip + x * d, y, d, pole, knee, max_swivel)
    knee_new = hip + x * d + y * pole
    D_hip = _rotation_between(hk, knee_new - hip)
    ankle_moved = hip + (D_hip @ ha[..., None])[..., 0]
    D_knee = _rotation_between(ankle_moved - knee_new, hip + c * d - knee_new)
    return D_hip, D_knee


def swivel_towards_ray(centre: np.ndarray, radius: np.ndarray, axis: np.ndarray, pole: np.ndarray,
                       point: np.ndarray, max_angle: float, steps: int | None = None) -> np.ndarray:
    """The direction ``(..., 3)`` on the knee's circle (``centre (..., 3)``, ``radius (..., 1)``,
    unit ``axis`` and ``pole (..., 3)``, ``pole`` across ``axis``) within ``max_angle`` (rad) of
    ``pole`` whose point lies nearest the line from the origin through ``point (..., 3)``: the
    squared distance ``|P|^2 - (P . r)^2`` is evaluated at ``2 steps + 1`` angles (default
    :data:`SWIVEL_STEPS`) and refined by a parabola through the best one and its neighbours
    (vectorised)."""
    steps = SWIVEL_STEPS if steps is None else steps
    r = point / np.maximum(np.linalg.norm(point, axis=-1, keepdims=True), 1e-12)
    side = np.cross(axis, pole)
    phi = np.linspace(-max_angle, max_angle, 2 * steps + 1)                       # (S,)
    dirs = np.cos(phi)[:, None] * pole[..., None, :] + np.sin(phi)[:, None] * side[..., None, :]
    P = centre[..., None, :] + radius[..., None, :] * dirs                        # (..., S, 3)
    f = (P * P).sum(-1) - (P * r[..., None, :]).sum(-1) ** 2
    i = np.clip(np.argmin(f, axis=-1), 1, len(phi) - 2)[..., None]
    f0, f1, f2 = (np.take_along_axis(f, i + k, -1)[..., 0] for k in (-1, 0, 1))
    curv = f0 - 2 * f1 + f2
    step = np.where(curv > 1e-18, 0.5 * (f0 - f2) / np.where(curv > 1e-18, curv, 1.0), 0.0)
    best = np.clip(phi[i[..., 0]] + np.clip(step, -1, 1) * (phi[1] - phi[0]), -max_angle, max_angle)
    return np.cos(best)[..., None] * pole + np.sin(best)[..., None] * side


def knee_shift_reach(a: np.ndarray, b: np.ndarray, knee: np.ndarray, hip: np.ndarray, ankle: np.ndarray,
                     shift: float) -> tuple[np.ndarray, np.ndarray]:
    """The hip-ankle distances ``(c_min, c_max)`` ``(..., 1)`` of a leg (thigh ``a``, shin ``b``,
    ``(..., 1)``; joints ``(..., 3)``) at which the knee is at most ``shift`` (m) farther from or
    nearer to the hip-ankle line than now: the knee's distance from the line is ``y``, and
    ``c(y) = sqrt(a^2 - y^2) + sqrt(b^2 - y^2)`` falls as ``y`` grows."""
    ha = ankle - hip
    u = ha / np.maximum(np.linalg.norm(ha, axis=-1, keepdims=True), 1e-9)
    hk = knee - hip
    y = np.linalg.norm(hk - (hk * u).sum(-1, keepdims=True) * u, axis=-1, keepdims=True)
    m = np.minimum(a, b)

    def c_of(yy):
        yy = np.clip(yy, 0.0, m)
        return np.sqrt(np.maximum(a ** 2 - yy ** 2, 0.0)) + np.sqrt(np.maximum(b ** 2 - yy ** 2, 0.0))
    return c_of(y + shift), c_of(y - shift)


def apply_leg_ik(rot: np.ndarray, G: np.ndarray, hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray,
                 target: np.ndarray, side: int, max_knee_shift: float = np.inf, max_swivel: float = 0.0) -> np.ndarray:
    """The relative rotations ``rot (B, 52, 3, 3)`` with one leg moved by :func:`two_bone_ik`.

    G ``(B, 52, 3, 3)`` the global rotations of ``rot``; hip/knee/ankle/target ``(B, 3)`` of leg
    ``side`` (0 left, 1 right).  Hip: ``G_p^T D_h G_hip``; knee: ``(D_h G_hip)^T D_k D_h G_knee``;
    ankle: its global orientation kept.  Returns a new array."""
    h, k, a = HIPS[side], KNEES[side], ANKLES[side]
    Dh, Dk = two_bone_ik(hip, knee, ankle, target, max_knee_shift, max_swivel)
    out = rot.copy()
    Gp = G[:, 0]                                                    # hips' parent: the pelvis
    Gh_new = Dh @ G[:, h]
    Gk_new = Dk @ Dh @ G[:, k]
    out[:, h] = np.swapaxes(Gp, -1, -2) @ Gh_new
    out[:, k] = np.swapaxes(Gh_new, -1, -2) @ Gk_new
    out[:, a] = np.swapaxes(Gk_new, -1, -2) @ G[:, a]
    return out


def ankle_height_above_soles(body, betas: np.ndarray) -> float:
    """The rest ankles' mean height above the lowest heel/toe keypoint vertex (m, unscaled),
    or 0.08 when the model has no heel/toe vertices."""
    vids = body.keypoint_vertices
    names = [f"{s}_{p}" for s in ("left", "right") for p in ("heel", "big_toe")]
    if not all(n in vids for n in names):
        return 0.08
    ids = np.array([vids[n] for n in names])
    b = np.asarray(betas, np.float64)
    v = body.v_template[ids] + np.asarray(body.shapedirs[ids, :, :len(b)], np.float64) @ b
    j = body.rest_joints(b)[ANKLES]
    return float(j[:, 1].mean() - v[:, 1].min())


def default_ankle_height(body) -> Callable[[np.ndarray], float]:
    """``betas -> ankle height`` of :func:`ankle_height_above_soles` for ``body``, cached per betas."""
    cache: dict[bytes, float] = {}

    def height(betas: np.ndarray) -> float:
        key = np.asarray(betas, np.float64).tobytes()
        if key not in cache:
            cache[key] = ankle_height_above_soles(body, betas)
        return cache[key]
    return height


__all__ = ["fit_ground_plane", "run_means", "contact_labels", "hysteresis", "lock_plan", "root_correction",
           "smooth_centred",
           "two_bone_ik", "swivel_towards_ray", "knee_shift_reach", "apply_leg_ik", "foot_image_speed", "ankle_height_above_soles", "default_ankle_height"]
