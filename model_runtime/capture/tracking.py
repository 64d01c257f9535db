"""Per-clip state carried across frames: hand sides and the body's shape.

* :func:`hand_swap_mask` / :class:`HandSideTracker`: detectors sometimes label
  the person's left hand as the right one (MediaPipe Holistic does when hands
  cross or the person turns).  A hand belongs to the side whose *anchor* is
  nearer: the body detector's wrist keypoint when it is confident, else the
  hand's position in the previous frame.  The two hands (or a single one) are
  swapped when the crossed assignment is clearly cheaper (hysteresis
  :data:`SWAP_RATIO`).
* :class:`ShapeEstimator`: beta and scale alpha are per clip.  The IK gives
  them per frame; the clip's value is the confidence-weighted median over the
  first ``window`` valid frames (robust to the frames where the pose is
  unusual or the detection poor), then frozen.  The image-aligned fit's
  calibration then refines beta against the image (:meth:`ShapeEstimator.set_betas`,
  :mod:`.shape_fit`) and alpha by the depth anchoring (:meth:`ShapeEstimator.rescale`);
  :attr:`ShapeEstimator.ik_betas` keeps the IK's value.
* :class:`PersonSwitchDetector`: a single-person detector that loses its person (MediaPipe
  Holistic does for a frame when players cross) may come back on another one, metres away.  A
  valid frame whose torso lies further from the last seen torso than a body can move in the time
  between them (:data:`SWITCH_JUMP_TORSOS` torso lengths plus :data:`SWITCH_SPEED_TORSOS` a
  second), or is :data:`SWITCH_SIZE_RATIO` times larger or smaller (hips seen), starts a new track
  (``FrameRecord.track_break``): nothing temporal (filters, gap filling, smoothing, the fit's
  temporal term) links the frames across it, so the avatar does not glide from one person to the
  other, and the capture file says where (``track_break``).  A cut in edited footage that moves
  or rescales the person is the same event.
"""
from __future__ import annotations

from typing import Final

import numpy as np

from ..core.skeleton import BODY_KEYPOINT_NAMES
from .translation import weighted_median

SWAP_RATIO: Final[float] = 0.5
MIN_CONFIDENCE: Final[float] = 0.3
_LW, _RW = BODY_KEYPOINT_NAMES.index("left_wrist"), BODY_KEYPOINT_NAMES.index("right_wrist")
#: a person switch: the torso centre moved more than JUMP + SPEED x (seconds since the last seen torso)
#: torso lengths (a runner crossing a static camera's view moves ~20 torso lengths a second, 0.7 a
#: frame at 30 fps), or the torso (hips seen in both frames) grew or shrank by more than SIZE_RATIO within MAX_GAP_S
SWITCH_JUMP_TORSOS: Final[float] = 1.0
SWITCH_SPEED_TORSOS: Final[float] = 10.0
SWITCH_SIZE_RATIO: Final[float] = 2.0
SWITCH_MAX_GAP_S: Final[float] = 1.0
#: keypoints that place the torso: shoulders and hips
_TORSO = tuple(BODY_KEYPOINT_NAMES.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))


def hand_swap_mask(hands_2d: np.ndarray, hands_conf: np.ndarray, anchors: np.ndarray,
                   anchors_ok: np.ndarray, ratio: float = SWAP_RATIO) -> np.ndarray:
    """Which frames have their hands on the wrong side.

    Args:
        hands_2d: ``(B, 2, 21, 3)`` [left, right] hand keypoints (row 0 = wrist), px + conf.
        hands_conf: ``(B, 2)`` per-hand confidence (0 = not detected).
        anchors: ``(B, 2, 2)`` expected [left, right] wrist positions, px.
        anchors_ok: ``(B, 2)`` bool, whether each anchor is known.
        ratio: swap when ``cost_swapped < ratio * cost_kept``.

    Returns:
        ``(B,)`` bool: True where the two hand slots should be exchanged.
    """
    present = hands_conf > 0                                                    # (B, 2)
    wrist = hands_2d[:, :, 0, :2]                                               # (B, 2, 2)
    d = np.linalg.norm(wrist[:, :, None, :] - anchors[:, None, :, :], axis=-1)  # (B, hand, anchor)
    usable = present[:, :, None] & anchors_ok[:, None, :]
    d = np.where(usable, d, 0.0)
    keep = d[:, 0, 0] + d[:, 1, 1]
    swap = d[:, 0, 1] + d[:, 1, 0]
    # evidence exists only if some hand can be compared with both anchors
    informative = (usable[:, :, 0] & usable[:, :, 1]).any(-1)
    return informative & (swap < ratio * keep)


class HandSideTracker:
    """Stateful per-frame hand-side correction (see :func:`hand_swap_mask`)."""

    def __init__(self, ratio: float = SWAP_RATIO, min_confidence: float = MIN_CONFIDENCE):
        self.ratio, self.min_confidence = ratio, min_confidence
        self._prev = np.zeros((2, 2))
        self._prev_ok = np.zeros(2, bool)
        self.swaps = 0

    def __call__(self, body_2d: np.ndarray, hands_2d: np.ndarray, hands_3d: np.ndarray,
                 hands_conf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Correct one frame.

        Args: body_2d ``(24, 3)``; hands_2d ``(2, 21, 3)``; hands_3d ``(2, 21, 3)``; hands_conf ``(2,)``.
        Returns: ``(hands_2d, hands_3d, hands_conf, swapped)`` with the slots in the person's
        [left, right] order.
        """
        body_w = body_2d[[_LW, _RW]]                                   # (2, 3)
        body_ok = body_w[:, 2] >= self.min_confidence
        anchors = np.where(body_ok[:, None], body_w[:, :2], self._prev)
        anchors_ok = body_ok | self._prev_ok
        swapped = bool(hand_swap_mask(hands_2d[None], hands_conf[None], anchors[None],
                                      anchors_ok[None], self.ratio)[0])
        if swapped:
            hands_2d, hands_3d, hands_conf = hands_2d[::-1].copy(), hands_3d[::-1].copy(), hands_conf[::-1].copy()
            self.swaps += 1
        present = hands_conf > 0
        self._prev = np.where(present[:, None], hands_2d[:, 0, :2], self._prev)
        self._prev_ok = self._prev_ok | present
        return hands_2d, hands_3d, hands_conf, swapped


def torso_anchor(body_2d: np.ndarray, min_confidence: float = 0.5) -> tuple[np.ndarray, float, bool] | None:
    """Where the torso is in one frame: ``body_2d (24, 3)`` px -> ``(centre (2,), size px, hips)`` or None.

    The centre is the shoulders' midpoint (in every frame that has both shoulders, so frames with and
    without the hips compare).  The size is the larger of the shoulder width and, with both hips
    confident (``hips``), the torso length (shoulders' midpoint to hips'), which does not shrink when the
    person turns sideways.  None without both shoulders (nothing to compare)."""
    p = np.asarray(body_2d, np.float64)[list(_TORSO)]
    ok = p[:, 2] >= min_confidence
    if not ok[:2].all():
        return None
    mid = p[:2, :2].mean(0)
    width = float(np.linalg.norm(p[0, :2] - p[1, :2]))
    if ok[2:].all():
        return mid, max(width, float(np.linalg.norm(mid - p[2:, :2].mean(0)))), True
    return mid, width, False


class PersonSwitchDetector:
    """Marks the frames where the detector's person changes (module docstring); one per clip.

    :meth:`update` takes the valid records in file order and returns whether each starts a new track;
    frames without a torso to compare (or invalid ones) pass without a decision.  Distances are in units
    of the largest torso size seen over the last :data:`SWITCH_MAX_GAP_S` (a person turning sideways
    narrows the shoulders, not the person); the size test needs the hips in both frames."""

    def __init__(self, jump: float = SWITCH_JUMP_TORSOS, speed: float = SWITCH_SPEED_TORSOS,
                 size_ratio: float = SWITCH_SIZE_RATIO, max_gap_s: float = SWITCH_MAX_GAP_S):
        self.jump, self.speed, self.size_ratio, self.max_gap_s = jump, speed, size_ratio, max_gap_s
        self._last: tuple[float, np.ndarray, float, bool] | None = None      # time, centre, size, hips
        self._sizes: list[tuple[float, float]] = []                           # (time, size) of the track
        self.breaks = 0

    def update(self, time: float, body_2d: np.ndarray) -> bool:
        """One valid frame at ``time`` (s) with ``body_2d (24, 3)`` px -> True where a new track starts."""
        a = torso_anchor(body_2d)
        if a is None or a[1] < 1.0:
            return False
        centre, size, hips = a
        t = float(time)
        brk = False
        if self._last is not None:
            t0, c0, s0, hips0 = self._last
            dt = max(t - t0, 0.0)
            ref = max(s for _, s in self._sizes)          # pruned to the second before t0 by the last call
            moved = float(np.linalg.norm(centre - c0)) / ref
            resized = hips and hips0 and dt <= self.max_gap_s and max(size / s0, s0 / size) > self.size_ratio
            brk = moved > self.jump + self.speed * dt or resized
        if brk:
            self._sizes = []
        self._sizes = [(ts, s) for ts, s in self._sizes if t - ts <= self.max_gap_s] + [(t, size)]
        self._last = (t, centre, size, hips)
        self.breaks += int(brk)
        return brk


class ShapeEstimator:
    """Clip-level shape ``betas (16,)`` and scale ``alpha`` from per-frame IK estimates.

    ``add`` accumulates until ``window`` valid frames were seen, then the
    estimate is frozen (:attr:`frozen`).  Before that, :attr:`betas`/:attr:`scale`
    return the running weighted median (or the defaults if nothing was added).
    """

    def __init__(self, window: int = 30, num_betas: int = 16):
        self.window = int(window)
        self._betas: list[np.ndarray] = []
        self._scale: list[float] = []
        self._w: list[float] = []
        self._frozen: tuple[np.ndarray, float] | None = None
        self._ik_betas: np.ndarray | None = None
        self._nb = num_betas
        #: the frame index of the last frame added when the estimate froze (the window's end: the
        #: clip's calibration runs on the frames up to it), None while open or when none carried one
        self.window_end: int | None = None
        self._last_index: int | None = None

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    @property
    def count(self) -> int:
        return len(self._w)

    def add(self, betas: np.ndarray, scale: float, weight: float, index: int | None = None) -> None:
        """Add one frame's ``betas (16,)``, ``scale`` and ``weight`` (e.g. mean body confidence);
        ``index``: the frame's index (:attr:`window_end`)."""
        if self._frozen is not None or not weight > 0:
            return
        self._betas.append(np.asarray(betas, np.float64).reshape(self._nb))
        self._scale.append(float(scale))
        self._w.append(float(weight))
        self._last_index = index
        if len(self._w) >= self.window:
            self.freeze()

    def freeze(self) -> None:
        """Freeze with whatever was seen (end of the clip)."""
        if self._frozen is None:
            self._frozen = self._estimate()
            self.window_end = self._last_index

    def set_betas(self, betas: np.ndarray) -> None:
        """Replace the clip's betas (freezing first; the IK's stay in :attr:`ik_betas`): the
        image-aligned fit's per-clip shape (:func:`~.shape_fit.fit_clip_shape`)."""
        self.freeze()
        if self._ik_betas is None:
            self._ik_betas = self._frozen[0].copy()
        b = np.asarray(betas, np.float64).reshape(self._nb)
        if not np.isfinite(b).all():
            raise ValueError("betas: non-finite values")
        self._frozen = (b.copy(), self._frozen[1])

    @property
    def ik_betas(self) -> np.ndarray:
        """The IK's clip betas (the weighted median), before :meth:`set_betas`."""
        return self._ik_betas.copy() if self._ik_betas is not None else self.betas

    def rescale(self, factor: float) -> None:
        """Multiply the clip's scale by ``factor`` (freezing it first): the image-aligned fit's depth
        anchoring (:meth:`~.align_clip.ClipAlignment.calibrate`)."""
        self.freeze()
        self._frozen = (self._frozen[0], self._frozen[1] * float(factor))

    def _estimate(self) -> tuple[np.ndarray, float]:
        if not self._w:
            return np.zeros(self._nb), 1.0
        w = np.asarray(self._w)
        b = weighted_median(np.stack(self._betas, -1), w)           # (16,)
        s = float(weighted_median(np.asarray(self._scale), w))
        return b, s

    @property
    def betas(self) -> np.ndarray:
        return (self._frozen or self._estimate())[0]

    @property
    def scale(self) -> float:
        return (self._frozen or self._estimate())[1]
