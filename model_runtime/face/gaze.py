"""Gaze from MediaPipe's iris landmarks -> ARKit ``eyeLook*`` keys (numpy only).

The refined face mesh adds 10 landmarks (468-477): the iris centre and four rim points of the
person's right eye, then of the left (``Detection.extras['iris_landmarks_px']``).  Per eye, the
iris centre is expressed in the eye's own frame: ``x`` along the corner-to-corner axis (towards
the person's left), ``y`` across it (down for an upright head), origin the mean of the two corners
and the two mid-lid points, unit the eye width.  The eyeball's radius is about 0.4 eye widths
(12 mm for a 30 mm eye), so ``angle = asin(offset / EYEBALL_RADIUS_EW)``.

What "looking ahead" looks like differs between people (the iris sits a little above the mid-lid
line, for example), so :class:`GazeEstimator` subtracts a per-clip neutral offset, the running
mean of the first ``neutral_frames`` open-eyed frames (a talking head mostly looks at the camera).
A frame whose lids are nearly closed (openness < ``closed_fraction`` of the clip's open-eye
level) keeps the previous gaze: the iris is hidden.

ARKit convention (keys of the person's left/right eye): ``eyeLookOutLeft`` = the left eye turns
to the person's left, ``eyeLookInLeft`` = to the right; ``eyeLookUp*``/``eyeLookDown*``; 1.0 =
:data:`MAX_ANGLE_DEG`.  :func:`keys_to_angles` is the inverse (the add-on turns the eyeballs by it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Sequence

import numpy as np

#: (upper lid, lower lid, corner on the person's right, corner on the person's left) per eye:
#: person's right eye, then left (MediaPipe ids)
EYES: Final[tuple[tuple[int, int, int, int], ...]] = ((159, 145, 33, 133), (386, 374, 362, 263))
IRIS_CENTRE: Final[tuple[int, int]] = (0, 5)          # rows of the 10 iris landmarks
EYEBALL_RADIUS_EW: Final[float] = 0.4                 # eyeball radius in eye widths
MAX_ANGLE_DEG: Final[float] = 30.0                    # an eyeLook key of 1.0
SIDES: Final[tuple[str, str]] = ("Right", "Left")     # order of EYES


def eye_offsets(landmarks: np.ndarray, iris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``landmarks (..., 468, >=2)``, ``iris (..., 10, >=2)`` px -> (iris offsets ``(..., 2, 2)``
    [eye: right, left][x to the person's left, y down] in eye widths, lid openness ``(..., 2)``
    = lid distance / eye width)."""
    offs, opens = [], []
    for (up, lo, a, b), c in zip(EYES, IRIS_CENTRE):
        pa, pb = landmarks[..., a, :2], landmarks[..., b, :2]
        axis = pb - pa
        w = np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
        ex = axis / w
        ey = np.stack([-ex[..., 1], ex[..., 0]], -1)
        mid = 0.25 * (pa + pb + landmarks[..., up, :2] + landmarks[..., lo, :2])
        d = iris[..., c, :2] - mid
        offs.append(np.stack([(d * ex).sum(-1), (d * ey).sum(-1)], -1) / w)
        opens.append(np.linalg.norm(landmarks[..., up, :2] - landmarks[..., lo, :2], axis=-1) / w[..., 0])
    return np.stack(offs, -2), np.stack(opens, -1)


def angles_to_keys(angles: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Gaze angles ``(2, 2)`` radians [eye right, left][yaw to the person's left, pitch down] ->
    ``(E,)`` values for ``names`` (only the eight ``eyeLook*`` entries are non-zero), in [0, 1]."""
    out = np.zeros(len(names), np.float32)
    idx = {n: i for i, n in enumerate(names)}
    scale = 1.0 / np.radians(MAX_ANGLE_DEG)
    for (yaw, pitch), side in zip(angles, SIDES):
        horiz = {"Left": ("Out", "In"), "Right": ("In", "Out")}[side]      # key for +yaw, key for -yaw
        for key, v in ((f"eyeLook{horiz[0]}{side}", yaw), (f"eyeLook{horiz[1]}{side}", -yaw),
                       (f"eyeLookDown{side}", pitch), (f"eyeLookUp{side}", -pitch)):
            if key in idx:
                out[idx[key]] = np.clip(v * scale, 0.0, 1.0)
    return out


def keys_to_angles(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """``values (..., E)`` of ``names`` -> gaze angles ``(..., 2, 2)`` radians (see :func:`angles_to_keys`);
    keys a capture lacks count as 0."""
    values = np.asarray(values, np.float64)
    idx = {n: i for i, n in enumerate(names)}
    get = lambda k: values[..., idx[k]] if k in idx else np.zeros(values.shape[:-1])  # noqa: E731
    s = np.radians(MAX_ANGLE_DEG)
    right = np.stack([get("eyeLookInRight") - get("eyeLookOutRight"),
                      get("eyeLookDownRight") - get("eyeLookUpRight")], -1)
    left = np.stack([get("eyeLookOutLeft") - get("eyeLookInLeft"),
                     get("eyeLookDownLeft") - get("eyeLookUpLeft")], -1)
    return s * np.stack([right, left], -2)


@dataclass
class GazeEstimator:
    """Per-clip gaze (see the module doc); :meth:`update` once per frame with a face."""

    neutral_frames: int = 60
    closed_fraction: float = 0.5
    _neutral: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))
    _open: float = 0.0
    _n: int = 0
    _last: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))

    def reset(self) -> None:
        self._neutral, self._open, self._n, self._last = np.zeros((2, 2)), 0.0, 0, np.zeros((2, 2))

    def update(self, landmarks: np.ndarray, iris: np.ndarray | None) -> np.ndarray:
        """``landmarks (468, >=2)``, ``iris (10, >=2)`` px or None -> angles ``(2, 2)`` radians
        [eye right, left][yaw to the person's left, pitch down]; the previous angles when the
        iris is missing or the eyes are closed."""
        if iris is None or not np.isfinite(iris).all() or not np.isfinite(landmarks).all():
            return self._last.copy()
        off, openness = eye_offsets(np.asarray(landmarks, np.float64), np.asarray(iris, np.float64))
        o = float(openness.mean())
        if self._n and o < self.closed_fraction * self._open:
            return self._last.copy()
        if self._n < self.neutral_frames:
            self._n += 1
            self._neutral += (off - self._neutral) / self._n
            self._open += (o - self._open) / self._n
        rel = np.clip((off - self._neutral) / EYEBALL_RADIUS_EW, -1.0, 1.0)
        self._last = np.arcsin(rel)
        return self._last.copy()
