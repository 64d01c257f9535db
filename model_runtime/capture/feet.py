"""Feet (issue 10, item 4): per-foot contact labels, the clip's ground plane, planted feet locked
and the root depth anchored by them.

The pure functions work on arrays of frames (shapes in their docstrings); :class:`FootStage`
runs them on a capture's records in file order with a bounded lookahead.  Offline it does not
hold frames: it hands each record on at once (unlocked, provisional contact labels) and changes
it in place when it decides it, ~3.5 s later; the capture rewrites those frames in the file
(:meth:`FootStage.take_revised`, :meth:`~model_runtime.core.capture_file.CaptureWriter.rewrite`),
so a kill loses no more than without the stage (docs/reliability.md).

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
  :data:`MAX_IMAGE_OFFSET_M` of where the image-aligned fit put the ankle (the lock's cost in the
  image is bounded by the detector's noise); the lock blends in over :data:`BLEND_FRAMES` before
  the span and out over as many after it, so nothing pops.
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
  its global orientation (the foot stays flat).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Callable, Final

import numpy as np

from ..core.lbs import forward_kinematics_rt
from ..core.rotations import axis_angle_to_matrix, matrix_to_quat_wxyz, quat_wxyz_to_matrix
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
#: the lock blends in/out over this many frames before/after a contact span
BLEND_FRAMES: Final[int] = 3
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
#: the leg IK changes the hip-ankle distance by at most this much (m; :func:`two_bone_ik`)
MAX_STRETCH: Final[float] = 0.01
#: the root's depth correction is interpolated across flights up to this long (s)
MAX_GAP_S: Final[float] = 0.6
#: offline, frames are decided (final labels, locks) in blocks of at least this many: the windows
#: around a block are computed once per block (they were handed on unlocked before)
LOCK_BLOCK: Final[int] = 64
#: ground plane: first fit after this many candidate frames (offline the stage decides no frame
#: until then, at most PLANE_HOLD_S), refitted every PLANE_REFIT_S seconds on the contact frames
PLANE_MIN_FRAMES: Final[int] = 10
PLANE_HOLD_S: Final[float] = 4.0
PLANE_REFIT_S: Final[float] = 5.0
#: prior weight (m per unit of tilt) of the plane's normal towards camera -y
PLANE_PRIOR: Final[float] = 0.3


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
                     iterations: int = 3, weights: np.ndarray | None = None) -> np.ndarray | None:
    """Robust plane through ``points (N, 3)`` (camera space, m; ``weights (N,)``, e.g. the frames
    each stands for), normal near camera ``-y``: ``(4,)`` = ``(n, d)`` with ``|n| = 1``,
    ``n . X + d`` = height above the plane, ``n`` pointing up (``n_y < 0``); None for fewer than
    3 points.  Soft-L1 least squares (``scale`` m) on
    ``(tilt_x, tilt_z, d)`` with ``prior`` x tilt as a prior, refitted ``iterations`` times on the
    points at most ``2 scale`` above the plane (the lower envelope: lifted feet are outliers)."""
    from scipy.optimize import least_squares

    P = np.asarray(points, np.float64).reshape(-1, 3)
    w = np.ones(len(P)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    ok = np.isfinite(P).all(1) & (w > 0)
    P, w = P[ok], np.sqrt(w[ok] / max(float(w[ok].mean()), 1e-12)) if ok.any() else w[ok]
    if len(P) < 3:
        return None
    x = np.array([0.0, 0.0, float(np.median(P[:, 1]))])        # n = -y: height = -y + d
    keep = np.ones(len(P), bool)
    for _ in range(iterations):
        def res(x, pts=P[keep], sw=w[keep]):
            n, d = _plane_from_params(x)
            return np.concatenate([sw * (pts @ n + d), prior * x[:2]])
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


def root_correction(w: np.ndarray, dist: np.ndarray, max_gap: int) -> np.ndarray:
    """Correction of the root's distance along its viewing ray, ``(T,)`` m: 0 where a foot is
    locked (``w (T, 2)`` > 0: the legs take the locked feet's offsets, which leaves the image of
    the rest of the body as the fit made it); across a flight (no foot locked) between two locked
    frames at most ``max_gap`` apart, the distance ``dist (T,)`` is replaced by the straight line
    between its values there (a body in the air moves at a constant horizontal speed), so the
    depth does not pump with a jump; 0 elsewhere."""
    locked = np.nonzero(w.sum(1) > 0)[0]
    c = np.zeros(len(dist))
    if len(locked) < 2:
        return c
    t = np.arange(len(c))
    k = np.searchsorted(locked, t, side="right") - 1
    p = locked[np.clip(k, 0, len(locked) - 1)]
    q = locked[np.clip(k + 1, 0, len(locked) - 1)]
    gap = (k >= 0) & (k < len(locked) - 1) & (t > p) & (t < q) & ((q - p) <= max_gap)
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
                max_stretch: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Global rotation increments ``(D_hip, D_knee)`` ``(..., 3, 3)`` that move ``ankle`` to
    ``target`` (all ``(..., 3)``) keeping the bone lengths and the knee in the leg's bend plane
    (the knee's side of the hip-target line); a target out of reach is brought to the nearest
    reachable distance.  ``max_stretch`` (m) limits the change of the hip-ankle distance (the knee
    bend): near a straight leg a centimetre more or less swings the knee by several, so the rest
    of the offset along the leg is left (the ankle then lands on the hip-target line).  The knee
    moves by ``D_hip``; the ankle by ``D_knee D_hip`` about the moved knee."""
    a = np.linalg.norm(knee - hip, axis=-1, keepdims=True)
    b = np.linalg.norm(ankle - knee, axis=-1, keepdims=True)
    ht = target - hip
    dist = np.linalg.norm(ht, axis=-1, keepdims=True)
    d = ht / np.maximum(dist, 1e-9)
    cur = np.linalg.norm(ankle - hip, axis=-1, keepdims=True)
    c = np.clip(np.clip(dist, cur - max_stretch, cur + max_stretch), np.abs(a - b) + 1e-4, a + b - 1e-4)
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
    knee_new = hip + x * d + y * pole
    D_hip = _rotation_between(hk, knee_new - hip)
    ankle_moved = hip + (D_hip @ ha[..., None])[..., 0]
    D_knee = _rotation_between(ankle_moved - knee_new, hip + c * d - knee_new)
    return D_hip, D_knee


def apply_leg_ik(rot: np.ndarray, G: np.ndarray, hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray,
                 target: np.ndarray, side: int, max_stretch: float = np.inf) -> np.ndarray:
    """The relative rotations ``rot (B, 52, 3, 3)`` with one leg moved by :func:`two_bone_ik`.

    G ``(B, 52, 3, 3)`` the global rotations of ``rot``; hip/knee/ankle/target ``(B, 3)`` of leg
    ``side`` (0 left, 1 right).  Hip: ``G_p^T D_h G_hip``; knee: ``(D_h G_hip)^T D_k D_h G_knee``;
    ankle: its global orientation kept.  Returns a new array."""
    h, k, a = HIPS[side], KNEES[side], ANKLES[side]
    Dh, Dk = two_bone_ik(hip, knee, ankle, target, max_stretch)
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


# ----------------------------------------------------------------------------- the stage
class _Rows:
    """Per-frame values of a clip in one growing array (capacity doubled when full): ``extend``
    adds ``(n, *shape)`` rows, ``a`` is the ``(len, *shape)`` view of those added."""

    def __init__(self, shape: tuple, dtype=np.float64):
        self._buf = np.zeros((256, *shape), dtype)
        self.n = 0

    def extend(self, rows: np.ndarray) -> None:
        m = len(rows)
        if self.n + m > len(self._buf):
            grown = np.zeros((max(2 * len(self._buf), self.n + m), *self._buf.shape[1:]), self._buf.dtype)
            grown[:self.n] = self._buf[:self.n]
            self._buf = grown
        self._buf[self.n:self.n + m] = rows
        self.n += m

    @property
    def a(self) -> np.ndarray:
        return self._buf[:self.n]


class FootStage:
    """Contact labels, ground plane, foot locking and root depth of one clip's records
    (:meth:`push` in file order, :meth:`flush` at the end).

    Offline (``lookahead``), :meth:`push` hands every record on at once, with provisional contact
    labels (those known so far: the plane and the frames around it), so that the capture writes it
    chunk by chunk as before; the stage keeps the records of the last seconds and decides them
    later, in blocks of at least :data:`LOCK_BLOCK` frames, once the plane is known (at most
    :data:`PLANE_HOLD_S`) and ``need`` frames of labels after them (~3.5 s at 30 fps) fix the
    locks' targets, the blends before a span and the root's interpolation across flights and its
    smoothing.  The records it then changes (final labels, locked legs, root depth, and the gap
    frames filled from them: :attr:`refill_gap`) are changed in place and listed by
    :meth:`take_revised`, for the writer to rewrite (:meth:`CaptureWriter.rewrite`).  :meth:`flush`
    (the clip's end, a cancel) decides everything still open and returns nothing new.
    Live, the same rules run with what has arrived, before the records are handed on: contacts
    causally, the lock on exactly the contact frames (its target the mean of the span's frames so
    far within the window), the root correction neither interpolated nor smoothed.
    Sets ``rec.foot_contact (2,)``, and on locked frames ``rec.quat``, ``rec.transl``,
    ``rec.joints``.  ``plane`` is the current ground plane ``(4,)`` or None.

    Args:
        rest_joints: ``betas`` -> rest joints ``(52, 3)``; parents: ``(52,)``.
        K: ``() -> (3, 3)`` the clip's current intrinsics; fps: frames per second.
        ankle_height: ``betas`` -> the rest ankle height above the soles (m, unscaled).
        lookahead: offline (decide with later frames) or live.
    """

    def __init__(self, rest_joints: Callable[[np.ndarray], np.ndarray], parents: np.ndarray,
                 K: Callable[[], np.ndarray], fps: float, ankle_height: Callable[[np.ndarray], float],
                 lookahead: bool = True):
        self.rest_joints, self.parents, self.K, self.fps = rest_joints, parents, K, float(fps)
        self.ankle_height = ankle_height
        self.live = not lookahead
        self.blend = BLEND_FRAMES
        self.half_window = max(1, round(LOCK_HALF_WINDOW_S * fps))
        self.depth_window = max(self.half_window, round(LOCK_DEPTH_HALF_WINDOW_S * fps))
        self.speed_half = max(1, round(SPEED_HALF_S * fps))
        self.max_gap = max(1, round(MAX_GAP_S * fps)) if lookahead else 0
        self.root_sigma = ROOT_SMOOTH_S * fps if lookahead else 0.0
        # frames of labels after a frame (and before it) that its plan depends on
        self.need = (self.max_gap + self.blend + self.depth_window + math.ceil(4 * self.root_sigma) + 2
                     if lookahead else 0)
        self.hold = round(PLANE_HOLD_S * fps) if lookahead else 0
        self.refit = max(1, round(PLANE_REFIT_S * fps))
        #: ``(gap, a, b) -> None``: fill the records of one gap (frames without a person) again from
        #: the valid records either side (None: the clip's start/end), as the capture's gap filler
        #: did (:meth:`filters.GapFiller.fill_gap`); called when a lock changed ``a`` or ``b``
        #: after the gap was filled.  None: gaps keep their fill.
        self.refill_gap: Callable[[list, object, object], None] | None = None
        self.plane: np.ndarray | None = None        # the ankle plane (n, d): n . X + d = ankle height above it
        self._ankle_h = 0.0
        self._recs: deque = deque()                 # records kept for deciding: history index _first on
        self._first = 0                             # history index of self._recs[0]
        self._final = 0                             # frames before this one are decided (final)
        self._revised: list = []                    # records changed after they were handed on
        # per-frame history (all frames of the clip: a few numbers each)
        self._pos = _Rows((2, 3))                   # raw ankles in camera space (0 where invalid)
        self._seen = _Rows((2,), bool)
        self._dist = _Rows(())                      # the root's distance from the camera (0: no person)
        self._kp = _Rows((2, 3, 2))                 # px and visibility of the feet's keypoints
        self._vis = _Rows((2, 3))
        self._labels = np.zeros((0, 2), bool)       # contact of the first len(_labels) frames (final)
        self._last_fit = 0
        self._rest_cache: tuple | None = None

    @property
    def ground_plane(self) -> np.ndarray | None:
        """``(4,)`` float32 ``(n, d)``: ``n . X + d`` = height above the ground (camera space), or None."""
        if self.plane is None:
            return None
        return np.concatenate([self.plane[:3], [self.plane[3] + self._ankle_h]]).astype(np.float32)

    @property
    def undecided(self) -> int:
        """Frames handed on whose labels and lock are not final yet (offline)."""
        return self._pos.n - self._final

    # -------------------------------------------------------------- input
    def _add(self, recs: list) -> None:
        """Append the feet's values of ``recs`` to the history, all records at once."""
        n = len(recs)
        ok = np.array([bool(r.valid and r.joints is not None) for r in recs], bool)
        kp, vis, seen = np.zeros((n, 2, 3, 2)), np.zeros((n, 2, 3)), np.zeros((n, 2), bool)
        pos, dist = np.zeros((n, 2, 3)), np.zeros(n)
        R = [r for r, o in zip(recs, ok) if o]
        if R:
            v = np.stack([np.asarray(r.keypoint_visibility, np.float64) for r in R])[:, FOOT_ROWS]
            legs = (np.stack([np.asarray(r.joint_confidence) for r in R])[:, _LEG_JOINTS] > 0).all(-1)
            t = np.stack([np.asarray(r.transl, np.float64) for r in R])
            kp[ok] = np.stack([np.asarray(r.body_2d) for r in R])[:, FOOT_ROWS, :2]
            vis[ok] = v
            seen[ok] = (v >= SEEN).all(-1) & legs
            pos[ok] = np.stack([r.joints[ANKLES] for r in R]) + t[:, None]
            dist[ok] = np.linalg.norm(t, axis=-1)
            shaped = [r for r in R if r.scale is not None and r.betas is not None]
            if shaped:
                self._ankle_h = float(shaped[-1].scale) * self.ankle_height(shaped[-1].betas)
        for rows, new in ((self._kp, kp), (self._vis, vis), (self._seen, seen), (self._pos, pos), (self._dist, dist)):
            rows.extend(new)
        self._recs.extend(recs)

    def _speeds(self, lo: int, hi: int) -> np.ndarray:
        """Image speeds of frames ``lo..hi-1`` (from frames ``lo-speed_half..hi-1+speed_half`` where they exist)."""
        k = self.speed_half
        a, b = max(lo - k, 0), min(hi + k, self._kp.n)
        kp, vis = self._kp.a[a:b], self._vis.a[a:b]
        depth = self._pos.a[a:b, :, 2]
        return foot_image_speed(kp, vis, depth, float(self.K()[0, 0]), self.fps, k)[lo - a:hi - a]

    def _fit_plane(self, final: bool) -> None:
        n = self._pos.n
        if n == 0 or (not final and n - self._last_fit < self.refit
                      and (self.plane is not None or n >= self.hold + self.refit)):
            return                      # (no plane by the end of the hold: tried again every refit)
        pos, seen = self._pos.a, self._seen.a
        L = len(self._labels)
        if self.plane is not None and self._labels[:L].any():
            use = self._labels                                        # contact frames
        else:                                                         # still, seen feet
            use = seen & (self._speeds(0, n) < ON_SPEED)
            if use.sum() < PLANE_MIN_FRAMES and not (final or n >= self.hold):
                return
        pts, frames = run_means(use, pos[:len(use)])                  # one point per planted run
        plane = fit_ground_plane(pts, weights=frames) if use.sum() >= PLANE_MIN_FRAMES else None
        if plane is not None:
            self.plane = plane
        self._last_fit = n

    def _contacts(self, lo: int, hi: int, init) -> np.ndarray:
        """Contact ``(hi - lo, 2)`` of frames ``lo..hi-1`` under the current plane, hysteresis from ``init``."""
        height = self._pos.a[lo:hi] @ self.plane[:3] + self.plane[3]
        return contact_labels(height, self._speeds(lo, hi), self._seen.a[lo:hi], init)

    def _label(self, final: bool) -> np.ndarray:
        """Final labels of the frames whose neighbours are known (all when ``final``, or live);
        -> the provisional contact ``(n - len(_labels), 2)`` of the frames after them, from the image
        speed over the frames there are (one hysteresis pass: the final labels are its first rows)."""
        n, lo = self._pos.n, len(self._labels)
        if self.plane is None or n <= lo:
            return np.zeros((n - lo, 2), bool)
        hi = max(n - (0 if final or self.live else self.speed_half), lo)
        c = self._contacts(lo, n, self._labels[-1] if lo else False)
        self._labels = np.concatenate([self._labels, c[:hi - lo]])
        return c[hi - lo:]

    def _provisional(self, recs: list, provisional: np.ndarray) -> None:
        """Contact labels of the newest records ``recs`` as known now: the final ones where they
        exist, else ``provisional`` (of the frames after the final labels)."""
        n, L = self._pos.n, len(self._labels)
        lo = n - len(recs)
        c = np.concatenate([self._labels[lo:L], provisional[max(lo - L, 0):]])
        for r, ci in zip(recs, c):
            r.foot_contact = ci.copy()

    def _rest(self, betas: np.ndarray, scale: float) -> np.ndarray:
        """Scaled rest joints ``(52, 3)`` of a shape (the clip's last one cached)."""
        key = (np.asarray(betas, np.float64).tobytes(), float(scale))
        if self._rest_cache is None or self._rest_cache[0] != key:
            self._rest_cache = (key, self.rest_joints(betas) * float(scale))
        return self._rest_cache[1]

    # -------------------------------------------------------------- output
    def push(self, recs) -> list:
        """Add the next records (file order); -> the records to hand on (offline: all of them, at once)."""
        recs = list(recs)
        if not recs:
            return recs
        self._add(recs)
        self._fit_plane(final=False)
        provisional = self._label(final=False)
        if self.live:                                   # decided now, before they are handed on
            self._decide(self._pos.n)
            return recs
        self._provisional(recs, provisional)
        if self.plane is None:
            if self._pos.n >= self.hold:
                self._revise(self._decide(self._pos.n))             # no plane (feet unseen): as they are
        elif len(self._labels) - self.need - self._final >= LOCK_BLOCK:
            self._revise(self._decide(len(self._labels) - self.need))
        return recs

    def flush(self) -> list:
        """The clip's end (or a cancel): decide every open frame; -> the records not handed on yet (none)."""
        self._fit_plane(final=True)
        self._label(final=True)
        changed = self._decide(self._pos.n)
        if not self.live:
            self._revise(changed)
        return []

    def take_revised(self) -> list:
        """The records changed since the last call after :meth:`push` had handed them on (each once)."""
        out, self._revised = self._revised, []
        return list({id(r): r for r in out}.values())

    def _revise(self, recs: list) -> None:
        self._revised.extend(recs)

    def _decide(self, upto: int) -> list:
        """Final labels and locks of frames ``_final..upto-1``; -> the records that changed."""
        a = self._final
        b = min(upto, self._first + len(self._recs))
        if b <= a:
            return []
        block = [self._recs[i - self._first] for i in range(a, b)]
        L = len(self._labels)
        contact = np.zeros((b - a, 2), bool)
        if L > a:
            contact[:min(L, b) - a] = self._labels[a:min(L, b)]
        changed = []
        for r, c in zip(block, contact):
            if not np.array_equal(r.foot_contact, c):
                changed.append(r)
            r.foot_contact = c.copy()
        if L > a and self.plane is not None and self._labels[:L].any():
            changed += self._lock(block, a, b)
        if not self.live:
            changed += self._refill(changed)
        self._final = b
        self._drop()
        return changed

    def _drop(self) -> None:
        """Forget decided records but the last valid one before the open frames and the gap after it
        (within ``need`` frames; a leading gap from the clip's start too): a gap is filled again
        when a record either side of it is locked (:meth:`_refill`)."""
        lo = max(self._first, self._final - self.need)
        keep = self._final
        for i in range(self._final - 1, lo - 1, -1):
            if self._recs[i - self._first].valid:
                keep = i
                break
        else:
            if self._first == 0 and self._final <= self.need:
                keep = 0
        for _ in range(keep - self._first):
            self._recs.popleft()
        self._first = max(keep, self._first)

    def _refill(self, changed: list) -> list:
        """Gaps (runs of records without a person) next to a record in ``changed`` filled again
        (:attr:`refill_gap`); -> their records."""
        if self.refill_gap is None or not changed:
            return []
        moved = {id(r) for r in changed if r.valid}
        if not moved:
            return []
        recs = list(self._recs)
        valid = np.array([bool(r.valid) for r in recs])
        out: list = []
        edges = np.flatnonzero(np.diff(np.concatenate([[1], valid.astype(np.int8), [1]])))
        for i, j in zip(edges[::2], edges[1::2]):                     # invalid runs recs[i:j]
            if i == 0 and self._first > 0:
                continue                                              # its start is forgotten: keep its fill
            prev = recs[i - 1] if i > 0 else None
            nxt = recs[j] if j < len(recs) else None
            if (prev is not None and id(prev) in moved) or (nxt is not None and id(nxt) in moved):
                gap = recs[i:j]
                self.refill_gap(gap, prev, nxt)
                out += gap
        return out

    def _lock(self, recs: list, a: int, b: int) -> list:
        """Lock the planted feet of frames ``a..b-1`` (``recs``) and correct the root along its ray;
        -> the records moved."""
        s, e = max(a - self.need - self.depth_window, 0), len(self._labels)
        pos = self._pos.a[s:e]
        lab = self._labels[s:e]
        plan = [lock_plan(lab[:, f], pos[:, f], self.blend, self.half_window) for f in range(2)]
        w = np.stack([p[0] for p in plan], 1)                          # (n, 2)
        target = np.stack([p[1] for p in plan], 1)                     # (n, 2, 3)
        far = np.stack([lock_plan(lab[:, f], pos[:, f], self.blend, self.depth_window)[1] for f in range(2)], 1)
        u = target / np.maximum(np.linalg.norm(target, axis=-1, keepdims=True), 1e-9)
        target = target + u * (u * (far - target)).sum(-1, keepdims=True)   # distance: the longer window's
        # across the ankle's viewing ray (what the image shows), at most MAX_IMAGE_OFFSET_M from where
        # the fit put it: a detector that moves a planted foot further is followed that far behind
        v = pos / np.maximum(np.linalg.norm(pos, axis=-1, keepdims=True), 1e-9)
        off = target - pos
        across = off - v * (v * off).sum(-1, keepdims=True)
        n_across = np.linalg.norm(across, axis=-1, keepdims=True)
        target = target - across * (1.0 - np.minimum(1.0, MAX_IMAGE_OFFSET_M / np.maximum(n_across, 1e-12)))
        if self.live:                                                  # nothing after the span is known
            w = np.where(lab, 1.0, 0.0)
        dist = self._dist.a[s:e]
        ok = dist > 0                                                  # frames with a person
        corr = np.where(ok, root_correction(w, dist, self.max_gap), 0.0)
        if self.root_sigma > 0:                                        # smoothed over frames with a person
            corr = np.where(ok, smooth_centred(corr, self.root_sigma)
                            / np.maximum(smooth_centred(ok.astype(np.float64), self.root_sigma), 1e-9), 0.0)
        sel = np.arange(a - s, b - s)
        sel = sel[[recs[i].valid and recs[i].joints is not None for i in range(len(sel))]]
        if not len(sel):
            return []
        wb, tb, cb = w[sel], target[sel], corr[sel]
        moved = (cb != 0) | (wb > 0).any(1)
        if not moved.any():
            return []
        R = [recs[i - (a - s)] for i in sel[moved]]
        wb, tb, cb = wb[moved], tb[moved], cb[moved]
        quat = np.stack([r.quat for r in R])
        rot = quat_wxyz_to_matrix(quat)
        transl = np.stack([r.transl for r in R]).astype(np.float64)
        transl = transl * (1.0 + cb / np.maximum(np.linalg.norm(transl, axis=-1), 1e-9))[:, None]   # along the ray
        rest = np.stack([self._rest(r.betas, r.scale) for r in R])
        J, G, _ = forward_kinematics_rt(rot, rest, self.parents)
        J = J + transl[:, None]
        for f in range(2):
            m = wb[:, f] > 0
            if not m.any():
                continue
            goal = J[m][:, ANKLES[f]] + wb[m, f, None] * (tb[m, f] - J[m][:, ANKLES[f]])
            rot[m] = apply_leg_ik(rot[m], G[m], J[m][:, HIPS[f]], J[m][:, KNEES[f]], J[m][:, ANKLES[f]], goal, f,
                                  MAX_STRETCH)
            J2, G2, _ = forward_kinematics_rt(rot[m], rest[m], self.parents)
            J[m], G[m] = J2 + transl[m][:, None], G2
        q = matrix_to_quat_wxyz(rot)
        q = np.where((q * quat).sum(-1, keepdims=True) < 0, -q, q)
        joints = J - transl[:, None]
        for i, r in enumerate(R):
            r.quat, r.transl, r.joints = q[i], transl[i], joints[i]
        return R


def default_ankle_height(body) -> Callable[[np.ndarray], float]:
    """``betas -> ankle height`` of :func:`ankle_height_above_soles` for ``body``, cached per betas."""
    cache: dict[bytes, float] = {}

    def height(betas: np.ndarray) -> float:
        key = np.asarray(betas, np.float64).tobytes()
        if key not in cache:
            cache[key] = ankle_height_above_soles(body, betas)
        return cache[key]
    return height


__all__ = ["FootStage", "fit_ground_plane", "run_means", "contact_labels", "hysteresis", "lock_plan", "root_correction",
           "smooth_centred",
           "two_bone_ik", "apply_leg_ik", "foot_image_speed", "ankle_height_above_soles", "default_ankle_height"]
