"""What the camera sees, and what a capture does with the rest: unseen parts are never invented.

Three steps, each a pure vectorised function or a small per-clip state:

1. :func:`keypoint_visibility`: per keypoint (the 66 rows of the capture file's ``keypoints_2d``:
   24 body, 21 left hand, 21 right hand) the detector's confidence, lowered for a point outside
   the image (linearly to 0 at :data:`FRAME_MARGIN` of the image's longer side beyond the border)
   and 0 for a point that is not detected.  MediaPipe keeps predicting legs below the frame of a
   waist-up clip, with visibilities of 0.01-0.3 and sometimes more; those points are guesses.
2. :class:`KeypointHysteresis`: a keypoint becomes *seen* when its visibility reaches
   :data:`SEEN_ON` on :data:`ON_FRAMES` frames in a row and *unseen* when it stays below
   :data:`SEEN_OFF` for :data:`OFF_FRAMES` frames in a row, so a flicker does not toggle it.  Only
   seen limb and face keypoints reach the IK (:func:`gated_confidence`; the torso's always do,
   :data:`IK_TORSO`): the IK's limb refinement swings a limb onto any keypoint with a confidence
   above 0, which is what folded the legs of waist-up clips into a crouch (knees at 90-160
   degrees) on MediaPipe's guessed legs.
3. :func:`joint_confidence` (per SMPL-H joint, from the keypoints that define its rotation, see
   :data:`JOINT_KEYPOINTS`) and :class:`UnseenBlender`: a joint that is not seen keeps its last
   seen rotation (*held*) and, :data:`HOLD_S` seconds after it was last seen, blends over
   :data:`BLEND_S` seconds to the neutral pose (:func:`neutral_pose`: standing legs, relaxed arms
   and fingers, an upright body facing the camera); one never seen is neutral from the start; one
   that comes back into view blends back to the observation over :data:`BLEND_S`
   (:data:`BLEND_FINGERS_S` for the fingers).  Seen joints
   keep their observed *global* orientation when an ancestor is replaced (a talking head's head
   keeps its turn when the unseen body below it stands neutral).

What the capture file records per frame (:mod:`model_runtime.core.capture_file`):
``keypoint_visibility (66,)`` (step 1), ``joint_confidence (52,)`` = the joint's confidence (the
smallest visibility of its keypoints) times its observation weight (below 1 while it blends back
in; 0 = unseen: the rotation is the held or neutral pose) and
``joint_source (52,)`` (:data:`SOURCE_SEEN`, :data:`SOURCE_NEUTRAL`, :data:`SOURCE_HELD`,
:data:`SOURCE_GAP`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Sequence

import numpy as np

from ..core import rotations
from ..core.skeleton import (
    BODY_KEYPOINT_NAMES, HAND21_NAMES, HAND_JOINT_SUFFIXES, JOINT_NAMES, NUM_BODY_JOINTS, NUM_JOINTS, PARENTS,
    depth_levels
)
from .filters import slerp
from .translation import eq14_confidence

#: keypoint rows of ``keypoints_2d`` / ``keypoint_visibility`` in capture files
KEYPOINT_NAMES: Final[tuple[str, ...]] = (
    BODY_KEYPOINT_NAMES
    + tuple(f"left_hand_{n}" for n in HAND21_NAMES)
    + tuple(f"right_hand_{n}" for n in HAND21_NAMES)
)
NUM_KEYPOINTS: Final[int] = len(KEYPOINT_NAMES)

#: a point this far outside the image (fraction of the longer image side) has visibility 0
FRAME_MARGIN: Final[float] = 0.15
#: hysteresis of a keypoint's seen state: on at >= SEEN_ON for ON_FRAMES frames, off below SEEN_OFF
#: for OFF_FRAMES frames
SEEN_ON: Final[float] = 0.5
SEEN_OFF: Final[float] = 0.2
ON_FRAMES: Final[int] = 2
OFF_FRAMES: Final[int] = 3
#: seconds of a blend between the observed and the held/neutral rotation
BLEND_S: Final[float] = 0.3
#: seconds an unseen joint holds its last seen rotation before it blends to the neutral pose
HOLD_S: Final[float] = 1.0
#: the same blends for the finger joints: hands are small and fast and flicker in and out of the
#: hand detector (on the openpose clip they are found in bursts of a few frames, more than HOLD_S
#: apart); with BLEND_S their fingers were mid-blend, flatter than the detector's, on most frames
#: they were seen (docs/fidelity.md, "Hands")
BLEND_FINGERS_S: Final[float] = 0.1

#: keypoints the IK always gets at the detector's confidence, seen or not: its body frame is built from
#: them and it was trained with them always present.  Without the guessed hips of a talking head its
#: head orientation is worse (docs/fidelity.md); the hips' joints are unseen all the same.
IK_TORSO: Final[tuple[str, ...]] = ("pelvis", "left_hip", "right_hip", "neck", "left_shoulder", "right_shoulder")

#: ``joint_source`` codes
SOURCE_SEEN: Final[int] = 0       # the camera's rotation (blending in when the weight is below 1)
SOURCE_NEUTRAL: Final[int] = 1    # unseen: the neutral pose (standing legs, relaxed arms and fingers)
SOURCE_HELD: Final[int] = 2       # unseen: the last seen rotation (blending to neutral after HOLD_S)
SOURCE_GAP: Final[int] = 3        # a frame without a person (``valid`` False): gap-filled

# relaxed pose angles, degrees
_SHOULDER_DOWN_DEG: Final[float] = 78.0
_ELBOW_FLEX_DEG: Final[float] = 15.0
_FINGER_FLEX_DEG: Final[tuple[float, float, float]] = (15.0, 20.0, 10.0)    # levels 1, 2, 3 (thumb: 0)


def _hand(side: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{side}_hand_{n}" for n in names)


def _joint_keypoints() -> dict[str, tuple[tuple[str, ...], ...]]:
    """SMPL-H joint -> alternatives, each the keypoints that together define the joint's rotation
    (the joint is seen when all keypoints of one alternative are seen)."""
    table: dict[str, tuple[tuple[str, ...], ...]] = {
        "pelvis": (("pelvis", "left_hip", "right_hip"), ("neck", "left_shoulder", "right_shoulder")),
        "neck": (("neck", "head"),),
        "head": (("head", "nose", "left_eye", "right_eye"),),
    }
    for s in ("spine1", "spine2", "spine3"):   # the chest's orientation: the IK spreads it over the spine
        table[s] = (("neck", "left_shoulder", "right_shoulder"),)
    for side in ("left", "right"):
        k = {n: f"{side}_{n}" for n in ("hip", "knee", "ankle", "big_toe", "heel", "shoulder", "elbow", "wrist")}
        table[f"{side}_hip"] = (("pelvis", k["hip"], k["knee"]),)
        table[f"{side}_knee"] = ((k["hip"], k["knee"], k["ankle"]),)
        table[f"{side}_ankle"] = ((k["knee"], k["ankle"], k["big_toe"]), (k["knee"], k["ankle"], k["heel"]))
        table[f"{side}_foot"] = ((k["ankle"], k["heel"], k["big_toe"]),)
        table[f"{side}_collar"] = (("neck", k["shoulder"]),)
        table[f"{side}_shoulder"] = ((k["shoulder"], k["elbow"]),)
        table[f"{side}_elbow"] = ((k["shoulder"], k["elbow"], k["wrist"]),)
        table[f"{side}_wrist"] = (_hand(side, "wrist", "index1", "pinky1"),)   # the hand's own orientation
        for suffix in HAND_JOINT_SUFFIXES:
            finger, level = suffix[:-1], int(suffix[-1])
            pts = (f"{finger}{level}", f"{finger}{level + 1}") + (("wrist",) if level == 1 else ())
            table[f"{side}_{suffix}"] = (_hand(side, *pts),)
    return table


#: SMPL-H joint -> alternatives of keypoint names (see :func:`joint_confidence`)
JOINT_KEYPOINTS: Final[dict[str, tuple[tuple[str, ...], ...]]] = _joint_keypoints()


def _joint_index_table() -> np.ndarray:
    """``(52, 2, 4)`` keypoint rows per joint, alternative and member (padded by repetition)."""
    row = {n: i for i, n in enumerate(KEYPOINT_NAMES)}
    out = np.zeros((NUM_JOINTS, 2, 4), np.int64)
    for j, name in enumerate(JOINT_NAMES):
        alts = JOINT_KEYPOINTS[name]
        for a in range(2):
            members = [row[n] for n in alts[min(a, len(alts) - 1)]]
            out[j, a] = (members + members * 4)[:4]
    return out


_JOINT_ROWS: Final[np.ndarray] = _joint_index_table()
_IK_TORSO_MASK: Final[np.ndarray] = np.isin(np.arange(NUM_KEYPOINTS), [KEYPOINT_NAMES.index(n) for n in IK_TORSO])
_LEVELS: Final[list[np.ndarray]] = depth_levels(PARENTS)


# --------------------------------------------------------------------------- keypoints
def keypoint_visibility(keypoints: np.ndarray, image_size: Sequence[int], margin: float = FRAME_MARGIN) -> np.ndarray:
    """Visibility in [0, 1] of keypoints ``(..., K, 3)`` (x, y px, confidence) in an image of
    ``image_size`` (width, height): the confidence, times a factor falling linearly from 1 at the
    image border to 0 at ``margin`` times the longer image side outside it; 0 where a value is
    not finite or the confidence is 0.  -> ``(..., K)`` float32."""
    kp = np.asarray(keypoints, np.float64)
    w, h = float(image_size[0]), float(image_size[1])
    x, y, c = kp[..., 0], kp[..., 1], kp[..., 2]
    outside = np.maximum(np.maximum(-x, x - w), np.maximum(-y, y - h))          # px beyond the nearest border
    factor = np.clip(1.0 - np.maximum(outside, 0.0) / (margin * max(w, h, 1.0)), 0.0, 1.0)
    vis = np.clip(c, 0.0, 1.0) * factor
    return np.where(np.isfinite(vis), vis, 0.0).astype(np.float32)


@dataclass
class KeypointHysteresis:
    """Per-keypoint seen state across frames (:meth:`__call__` per batch of frames, in order).

    A keypoint turns seen after ``on_frames`` frames in a row at ``>= on`` and unseen after
    ``off_frames`` frames in a row below ``off``; in between it keeps its state.  The first frame
    sets the state directly (seen when ``>= on``)."""

    on: float = SEEN_ON
    off: float = SEEN_OFF
    on_frames: int = ON_FRAMES
    off_frames: int = OFF_FRAMES
    seen: np.ndarray | None = None                 # (K,) bool
    run: np.ndarray | None = None                  # (K,) frames in a row that disagree with ``seen``

    def __call__(self, vis: np.ndarray) -> np.ndarray:
        """``vis (T, K)`` -> seen ``(T, K)`` bool."""
        vis = np.asarray(vis)
        out = np.empty(vis.shape, bool)
        if self.seen is None and len(vis):
            self.seen, self.run = vis[0] >= self.on, np.zeros(vis.shape[1], np.int64)
        if not len(vis) or not np.where(self.seen, vis < self.off, vis >= self.on).any():
            self.run[:] = 0            # every frame agrees with the state (the common case)
            out[:] = self.seen
            return out
        need = (self.on_frames, self.off_frames)
        for t, v in enumerate(vis):
            disagree = np.where(self.seen, v < self.off, v >= self.on)
            self.run = np.where(disagree, self.run + 1, 0)
            flip = self.run >= np.where(self.seen, need[1], need[0])
            self.seen = self.seen ^ flip
            self.run[flip] = 0
            out[t] = self.seen
        return out


def usable(vis: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Keypoints ``(..., K)`` observed on this frame: seen (hysteresis) and visible at least
    :data:`SEEN_OFF` now (a seen keypoint's brief dropout is not used, its joints hold)."""
    return seen & (vis >= SEEN_OFF)


def gated_confidence(confidence: np.ndarray, use: np.ndarray) -> np.ndarray:
    """The IK's input confidences ``(..., 66)``: the detector's where the keypoint is usable
    (:func:`usable`) or one of :data:`IK_TORSO` (the IK ignores keypoints with confidence 0)."""
    return np.where(use | _IK_TORSO_MASK, confidence, 0.0)


def joint_seen(seen: np.ndarray) -> np.ndarray:
    """Per SMPL-H joint ``(..., 52)`` bool: all keypoints of one alternative of :data:`JOINT_KEYPOINTS`
    are seen (``seen (..., 66)``)."""
    return np.asarray(seen)[..., _JOINT_ROWS].all(-1).any(-1)


def joint_confidence(vis: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per SMPL-H joint ``(..., 52)`` from keypoint visibilities ``vis (..., 66)`` and which keypoints
    are usable (``use (..., 66)``): the best alternative of :data:`JOINT_KEYPOINTS`, each the
    smallest visibility of its keypoints, 0 unless all of them are usable."""
    return np.where(use, vis, 0.0)[..., _JOINT_ROWS].min(-1).max(-1)


def fit_confidence(ik_conf: np.ndarray, vis: np.ndarray, joint_conf: np.ndarray) -> np.ndarray:
    """The confidences ``(..., 66)`` of the image-aligned fit's 2D term (:mod:`.align_clip`): the IK's
    (``ik_conf``, 0 for unseen keypoints) without the points whose model position is invented, which
    the fit could only reach by moving the whole body:

    * the torso's (:data:`IK_TORSO`, which the IK gets seen or not) lowered to their visibility and
      0 below :data:`SEEN_OFF` (MediaPipe's guessed hips below a talking head, its guessed shoulders
      below a face close-up), and the neck's and shoulders' 0 where the chest (``spine3``) is unseen
      (its rotation is then the neutral pose's, so theirs is a guess);
    * a hand's where neither its wrist nor any joint of its arm (collar, shoulder, elbow) is seen:
      the fit could reach those points only by moving the whole body (before :func:`reach_joints`,
      a seen hand of an unseen arm pulled a face close-up's body away from the camera until the
      hand came near the face, docs/fidelity.md, "Face close-ups").  With the collar seen the fit
      swings the arm by it (a chin resting on a hand: mmpose 300wlp AFW_134212_1_0); with the
      wrist seen and the arm not, the fit poses the arm (:func:`reach_joints`).

    ``vis (..., 66)``: :func:`keypoint_visibility`; ``joint_conf (..., 52)``: :func:`joint_confidence`
    after the blending (0 = unseen)."""
    c = np.array(ik_conf, np.float64)
    v = np.asarray(vis, np.float64)
    jc = np.asarray(joint_conf, np.float64)
    torso = np.where(v >= SEEN_OFF, eq14_confidence(c, v), 0.0)    # gated by the image frame, as Eq. 14's
    c = np.where(_IK_TORSO_MASK, torso, c)
    chest = jc[..., _SPINE3] > 0
    c[..., _CHEST_ROWS] = np.where(chest[..., None], c[..., _CHEST_ROWS], 0.0)
    for side, rows in _HAND_ROWS.items():
        arm = (jc[..., ARM_JOINTS[side]] > 0).any(-1) | (jc[..., _WRIST[side]] > 0)
        c[..., rows] = np.where(arm[..., None], c[..., rows], 0.0)
    return c


def reach_joints(joint_conf: np.ndarray) -> np.ndarray:
    """``(..., 52)`` bool: the arm joints (collar, shoulder, elbow) that the image-aligned fit poses
    although unseen, so that the arm reaches a seen hand: those of a side whose wrist joint (the hand
    detector's wrist, index and pinky bases) is seen while its whole arm is not, e.g. a hand over
    the eye of a face close-up whose shoulders are below the image.  Without it the arm hangs
    neutral and the hand with it, far from where the camera sees it.  After the fit they are
    recorded as seen at the wrist's confidence (:func:`mark_reached`)."""
    jc = np.asarray(joint_conf)
    out = np.zeros(jc.shape, bool)
    for side in ("left", "right"):
        arm = ARM_JOINTS[side]
        reach = (jc[..., _WRIST[side]] > 0) & (jc[..., arm] <= 0).all(-1)
        out[..., arm] = reach[..., None]
    return out


def mark_reached(joint_conf: np.ndarray, joint_source: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``joint_confidence`` and ``joint_source`` ``(..., 52)`` of a frame whose ``reach`` joints
    (:func:`reach_joints`) the fit posed to the seen hand: seen, at the confidence of that side's wrist."""
    jc = np.array(joint_conf, copy=True)
    src = np.array(joint_source, copy=True)
    for side in ("left", "right"):
        arm = ARM_JOINTS[side]
        jc[..., arm] = np.where(reach[..., arm], jc[..., _WRIST[side], None], jc[..., arm])
    src[reach] = SOURCE_SEEN
    return jc, src


def release_weights(frames_since: np.ndarray, blend_frames: int) -> np.ndarray:
    """Weight ``(...)`` of a released arm's last reached pose ``frames_since`` frames after the hand was
    last seen (1 on that frame, a smoothstep down to 0 over ``blend_frames``): an arm that reached a
    hand blends back to its unseen pose over :data:`BLEND_S`, like any part that leaves the camera,
    instead of dropping in one frame when the hand detector loses the hand."""
    w = np.clip(1.0 - np.asarray(frames_since, np.float64) / (blend_frames + 1.0), 0.0, 1.0)
    return w * w * (3.0 - 2.0 * w)


_SPINE3: Final[int] = JOINT_NAMES.index("spine3")
_CHEST_ROWS: Final[np.ndarray] = np.array([KEYPOINT_NAMES.index(n) for n in ("neck", "left_shoulder", "right_shoulder")])
_HAND_ROWS: Final[dict[str, np.ndarray]] = {
    side: np.array([KEYPOINT_NAMES.index(n) for n in _hand(side, *HAND21_NAMES)]) for side in ("left", "right")}
_WRIST: Final[dict[str, int]] = {side: JOINT_NAMES.index(f"{side}_wrist") for side in ("left", "right")}
#: (collar, shoulder, elbow) of each side, the joints :func:`reach_joints` frees
ARM_JOINTS: Final[dict[str, np.ndarray]] = {
    side: np.array([JOINT_NAMES.index(f"{side}_{j}") for j in ("collar", "shoulder", "elbow")]) for side in ("left", "right")}


# --------------------------------------------------------------------------- neutral pose
def _rot_z(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])


def neutral_pose() -> np.ndarray:
    """The pose of unseen joints ``(52, 3, 3)``, relative rotations (SMPL-H rest frame: Y up, the
    character faces +Z, its left is +X): the pelvis upright and facing the camera in camera axes
    (x right, y down, z forward: ``diag(1, -1, -1)``), straight spine, neck and standing legs
    (identity), arms down at the sides (shoulders 78 degrees below the T-pose), elbows and
    fingers slightly bent, thumbs straight."""
    R = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    R[0] = np.diag([1.0, -1.0, -1.0])
    for side, sign in (("left", -1.0), ("right", 1.0)):     # the left arm points +X, the right -X
        R[JOINT_NAMES.index(f"{side}_shoulder")] = _rot_z(sign * _SHOULDER_DOWN_DEG)
        R[JOINT_NAMES.index(f"{side}_elbow")] = _rot_y(sign * _ELBOW_FLEX_DEG)   # forearm forward (+Z)
        for suffix in HAND_JOINT_SUFFIXES:
            if not suffix.startswith("thumb"):      # fingers along -X/+X curl towards the palm (-Y)
                R[JOINT_NAMES.index(f"{side}_{suffix}")] = _rot_z(-sign * _FINGER_FLEX_DEG[int(suffix[-1]) - 1])
    return R


NEUTRAL_POSE: Final[np.ndarray] = neutral_pose()
#: the 30 finger joints (SMPL-H: every joint after the 22 body joints)
_FINGER_JOINTS: Final[np.ndarray] = np.arange(NUM_JOINTS) >= NUM_BODY_JOINTS
NEUTRAL_POSE.setflags(write=False)


# --------------------------------------------------------------------------- blending
def _ancestors() -> np.ndarray:
    """``(52, 52)`` float: ``[a, j] = 1`` when joint a is a proper ancestor of joint j."""
    out = np.zeros((NUM_JOINTS, NUM_JOINTS))
    for j in range(NUM_JOINTS):
        a = PARENTS[j]
        while a >= 0:
            out[a, j] = 1.0
            a = PARENTS[a]
    return out


_ANCESTORS: Final[np.ndarray] = _ancestors()


def global_rotations(rot: np.ndarray) -> np.ndarray:
    """Relative rotations ``(B, 52, 3, 3)`` -> global ones (composed down the tree, level by level)."""
    G = np.empty_like(rot)
    G[:, _LEVELS[0]] = rot[:, _LEVELS[0]]
    for lvl in _LEVELS[1:]:
        G[:, lvl] = G[:, PARENTS[lvl]] @ rot[:, lvl]
    return G


def slerp_matrices(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Geodesic interpolation ``a exp(w log(a^T b))`` of rotations ``a, b (N, 3, 3)`` by ``w (N,)``
    (Rodrigues on the relative rotation; within a degree of a half turn through quaternions)."""
    D = np.swapaxes(a, -1, -2) @ b
    c = np.minimum(np.maximum(0.5 * (D[:, 0, 0] + D[:, 1, 1] + D[:, 2, 2] - 1.0), -1.0), 1.0)
    v = 0.5 * np.stack([D[:, 2, 1] - D[:, 1, 2], D[:, 0, 2] - D[:, 2, 0], D[:, 1, 0] - D[:, 0, 1]], -1)
    sin = np.sqrt((v * v).sum(-1))
    phi = w * np.arctan2(sin, c)
    k = v / np.maximum(sin, 1e-12)[:, None]
    K = np.zeros_like(D)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    K[:, 1, 0], K[:, 2, 0], K[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    out = a @ (np.eye(3) + np.sin(phi)[:, None, None] * K + (1.0 - np.cos(phi))[:, None, None] * (K @ K))
    far = c < -0.9998                       # ~ a half turn: the axis from the skew part is unreliable
    if far.any():
        q = rotations.matrix_to_quat_wxyz(np.stack([a[far], b[far]]))
        out[far] = rotations.quat_wxyz_to_matrix(slerp(q[0], q[1], w[far]))
    return out


def blend_rotations(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rotations ``a, b (..., 3, 3)`` blended by ``w (...)`` (0 -> a, 1 -> b; slerp, shortest path);
    only the entries with ``0 < w < 1`` are interpolated."""
    out = np.where((w >= 1.0)[..., None, None], b, a)
    mid = (w > 0.0) & (w < 1.0)
    if mid.any():
        out[mid] = slerp_matrices(out[mid], b[mid], w[mid])
    return out


def replace_unseen(rot: np.ndarray, target: np.ndarray, weight: np.ndarray,
                   observed: np.ndarray | None = None) -> np.ndarray:
    """Relative rotations ``(B, 52, 3, 3)``: each joint's observed rotation (``observed``, default
    ``rot``) blended by ``weight (B, 52)`` (1 = observed) with its ``target`` (slerp), where an
    observed joint below a replaced one (weight 0) keeps the *global* orientation it has in ``rot``
    (the IK's pose, in which a wrist's rotation reproduces the hand's orientation).  During a blend
    (0 < weight < 1) the joints below follow the blended joint.  -> the new relative rotations.

    The tree is walked (level by level, matrix products only) just for the frames with an observed
    joint below a replaced one."""
    seen = weight > 0.0
    out = np.where(seen[..., None, None], rot if observed is None else observed, target)
    moved = seen & ((~seen) @ _ANCESTORS > 0)                                  # (B, 52)
    busy = moved.any(-1)
    if busy.any():
        r, new, moved = rot[busy], out[busy], moved[busy]
        G_obs = global_rotations(r)
        G = np.empty_like(r)
        G[:, _LEVELS[0]] = new[:, _LEVELS[0]]
        for lvl in _LEVELS[1:]:
            parent = G[:, PARENTS[lvl]]
            m = moved[:, lvl]
            if m.any():
                new[:, lvl] = np.where(m[..., None, None], np.swapaxes(parent, -1, -2) @ G_obs[:, lvl], new[:, lvl])
            G[:, lvl] = parent @ new[:, lvl]
        out[busy] = new
    mixed = seen & (weight < 1.0)
    if mixed.any():
        out[mixed] = slerp_matrices(target[mixed], out[mixed], weight[mixed])
    return out


@dataclass
class UnseenBlender:
    """Per clip: unseen joints held, then neutral, blended in and out over time (module docstring).

    :meth:`__call__` takes the observed relative rotations of consecutive valid frames, which joints
    are seen (:func:`joint_seen` of the hysteresis) and which are observed on the frame itself
    (``fresh``, :func:`usable` keypoints), and the frame times; it returns the rotations to use,
    each joint's observation weight and its :data:`SOURCE_SEEN` / :data:`SOURCE_HELD` /
    :data:`SOURCE_NEUTRAL` code.  A seen joint that is not fresh (a dropout shorter than the
    hysteresis) holds its last fresh rotation at full weight; the hold time counts from it."""

    blend_s: float = BLEND_S
    hold_s: float = HOLD_S
    blend_fingers_s: float = BLEND_FINGERS_S
    neutral: np.ndarray = field(default_factory=lambda: NEUTRAL_POSE.copy())
    w: np.ndarray | None = None                     # (52,) observation weight
    u: np.ndarray | None = None                     # (52,) weight of the held rotation against neutral
    held: np.ndarray | None = None                  # (52, 3, 3) last fresh relative rotation
    last_seen: np.ndarray | None = None             # (52,) time a joint was last fresh
    t_prev: float | None = None

    def __call__(self, rot: np.ndarray, seen: np.ndarray, times: Sequence[float],
                 fresh: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``rot (B, 52, 3, 3)``, ``seen (B, 52)`` bool, ``times (B,)`` s, ``fresh (B, 52)`` bool (default
        ``seen``) -> (rotations ``(B, 52, 3, 3)``, observation weight ``(B, 52)`` in [0, 1] (0 where
        not fresh), source ``(B, 52)`` uint8)."""
        B = len(rot)
        fresh = seen if fresh is None else fresh & seen
        if B == 0:
            return rot, np.zeros((0, NUM_JOINTS)), np.zeros((0, NUM_JOINTS), np.uint8)
        if self.w is None:       # the first frame: seen joints are observed at once, the rest neutral
            self.w, self.u = seen[0].astype(np.float64), seen[0].astype(np.float64)
            self.held, self.last_seen = self.neutral.copy(), np.full(NUM_JOINTS, -np.inf)
            self.t_prev = float(times[0])
        observed = self.w >= 1.0
        if ((seen == observed).all() and (fresh == seen).all() and ((self.w == 0.0) | observed).all()
                and ((self.u == 0.0) | observed).all()):
            # steady: seen joints fully observed, the others fully neutral; only the held rotations move
            W, U = np.broadcast_to(self.w, seen.shape), np.broadcast_to(self.u, seen.shape)
            self.held = np.where(observed[:, None, None], rot[-1], self.held)
            self.last_seen = np.where(observed, float(times[-1]), self.last_seen)
            self.t_prev = float(times[-1])
            target, obs = np.broadcast_to(self.neutral, rot.shape), rot
        else:
            W, U, held, obs = self._advance(rot, seen, fresh, times)
            target = blend_rotations(np.broadcast_to(self.neutral, rot.shape), held, U)
        source = np.where(fresh, SOURCE_SEEN, np.where(U > 0, SOURCE_HELD, SOURCE_NEUTRAL)).astype(np.uint8)
        return replace_unseen(rot, target, W, obs), np.where(fresh, W, 0.0), source

    def _advance(self, rot: np.ndarray, seen: np.ndarray, fresh: np.ndarray,
                 times: Sequence[float]) -> tuple[np.ndarray, ...]:
        """The weights ``W``, ``U`` ``(B, 52)``, held rotations ``(B, 52, 3, 3)`` and observations (the
        held rotation where a joint is not fresh: an unseen joint's own rotation is a guess) frame by
        frame."""
        B = len(rot)
        W, U = np.empty((B, NUM_JOINTS)), np.empty((B, NUM_JOINTS))
        held, obs = np.empty_like(rot), np.empty_like(rot)
        blend = np.where(_FINGER_JOINTS, self.blend_fingers_s, self.blend_s)
        for t in range(B):
            now = float(times[t])
            step = np.minimum(max(now - self.t_prev, 0.0), blend) / blend                 # (52,)
            self.t_prev = now
            s, f = seen[t], fresh[t]
            self.w = np.minimum(np.maximum(self.w + np.where(s, step, -step), 0.0), 1.0)
            self.last_seen = np.where(f, now, self.last_seen)
            expired = now - self.last_seen > self.hold_s
            full = f & (self.w >= 1.0)        # while it blends back in, the pose it leaves stays the target
            self.u = np.where(full, 1.0, np.where(expired, np.maximum(self.u - step, 0.0), self.u))
            self.held = np.where(full[:, None, None], rot[t], self.held)
            W[t], U[t], held[t] = self.w, self.u, self.held
            obs[t] = np.where(f[:, None, None], rot[t], self.held)
        return W, U, held, obs
