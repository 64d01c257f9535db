"""The person's iris colour, sampled from the image (numpy + OpenCV, no torch).

MediaPipe's refined face mesh gives each eye's lid contour (16 landmarks) and its iris (centre and
four rim points, ``Detection.extras['iris_landmarks_px']``).  Inside the lid contour, the pixels
within the iris circle but outside its inner half (the pupil) are the iris, those beyond 1.15 iris
radii the sclera; each colour is the per-channel median over both eyes in linear RGB.  A sample
counts only where the eye was really seen: iris radius >= :data:`MIN_IRIS_RADIUS_PX`, lids
apart by :data:`MIN_OPENING_RADII` iris radii, enough pixels of both, and the sclera brighter than the iris (:data:`MAX_IRIS_TO_SCLERA`).  The iris,
divided by the face's irradiance towards the camera (the keyframe's SH lighting, Eq. 5, for the
face's forward normal), is an albedo in the units of the face's (:func:`eye_albedo`), which the
add-on gives its eyeballs' irises (``fullbody_addon/face_rig.py``); the clip's value is the mean
over its keyframes (:class:`EyeColourEstimate`).  The sclera is sampled for that check only: lids
and lashes shade it in every image (d3: sRGB 59, 34, 24), so as a colour it would paint the
eyeballs dark.

Shapes: image ``(H, W, 3)`` uint8 BGR; landmarks ``(468, >=2)`` px; iris ``(10, >=2)`` px
(468-477: the person's right eye's centre and rim, then the left's); colours ``(2, 3)`` linear RGB
``[iris, sclera]``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

import numpy as np

from ..models.face_model import sh_irradiance
from .gaze import EYES, IRIS_CENTRE
from .landmarks import MP_LEFT_EYE_RING, MP_RIGHT_EYE_RING

#: lid contours of the person's right eye (33, lower lid, 133, upper lid) and left eye (263 ...), in order
EYE_CONTOURS: Final[tuple[tuple[int, ...], ...]] = (MP_RIGHT_EYE_RING, MP_LEFT_EYE_RING)
#: iris ring: between these fractions of the iris radius (inside: the pupil and its highlight)
IRIS_RING: Final[tuple[float, float]] = (0.45, 0.95)
#: sclera: beyond this many iris radii from the iris centre
SCLERA_FROM: Final[float] = 1.15
#: an eye is sampled only when its lids are at least this many iris radii apart (mid-lid points)
MIN_OPENING_RADII: Final[float] = 1.0
#: fewest pixels of each kind over both eyes for a usable sample
MIN_PIXELS: Final[int] = 6
#: an eye whose iris radius is below this (px) is too small to sample
MIN_IRIS_RADIUS_PX: Final[float] = 3.0
#: a sample whose iris is not this much darker than its sclera (linear luminance) did not see an eye
MAX_IRIS_TO_SCLERA: Final[float] = 0.6
#: the face's front in face-model space (Y up, looking +Z): a tracked rotation maps it into the camera
FACE_FORWARD: Final[np.ndarray] = np.array([0.0, 0.0, 1.0])
#: linear RGB -> luminance (Rec. 709)
_LUMA: Final[np.ndarray] = np.array([0.2126, 0.7152, 0.0722])


@dataclass(frozen=True)
class EyeSample:
    """``colours (2, 3)`` linear RGB [iris, sclera] as seen (lit); ``pixels (2,)`` how many of each."""

    colours: np.ndarray
    pixels: np.ndarray


def sample_eye_colours(image_bgr: np.ndarray, landmarks: np.ndarray, iris: np.ndarray | None) -> EyeSample | None:
    """Iris and sclera colours seen in ``image_bgr`` (module docstring), or None when the eyes are
    closed, too small, outside the image or the landmarks are missing or not finite."""
    import cv2

    if iris is None or landmarks is None:
        return None
    lm, ir = np.asarray(landmarks, np.float64), np.asarray(iris, np.float64)
    if lm.ndim != 2 or lm.shape[0] < 468 or ir.ndim != 2 or ir.shape[0] != 10:
        return None
    if not (np.isfinite(lm[:, :2]).all() and np.isfinite(ir[:, :2]).all()):
        return None
    H, W = image_bgr.shape[:2]
    iris_px, sclera_px = [], []
    for contour, k, (up, lo, _, _) in zip(EYE_CONTOURS, IRIS_CENTRE, EYES):
        poly = lm[list(contour), :2]
        centre = ir[k, :2]
        r = float(np.linalg.norm(ir[k + 1:k + 5, :2] - centre, axis=1).mean())
        x0, y0 = np.floor(poly.min(0)).astype(int)
        x1, y1 = np.ceil(poly.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        opening = float(np.linalg.norm(lm[up, :2] - lm[lo, :2]))      # mid upper lid - mid lower lid
        if r < MIN_IRIS_RADIUS_PX or opening < MIN_OPENING_RADII * r or x1 - x0 < 3 or y1 - y0 < 2:
            continue
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(mask, [np.round(poly - (x0, y0)).astype(np.int32)], 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(xx + 0.5 - centre[0], yy + 0.5 - centre[1]) / r
        inside = mask.astype(bool)
        crop = (image_bgr[y0:y1, x0:x1, ::-1].astype(np.float32) / 255.0) ** 2.2     # linear RGB, this eye only
        iris_px.append(crop[inside & (d >= IRIS_RING[0]) & (d <= IRIS_RING[1])])
        sclera_px.append(crop[inside & (d >= SCLERA_FROM)])
    if not iris_px:
        return None
    a, b = np.concatenate(iris_px), np.concatenate(sclera_px)
    if len(a) < MIN_PIXELS or len(b) < MIN_PIXELS:
        return None
    col = np.stack([np.median(a, 0), np.median(b, 0)]).astype(np.float64)
    if not col[0] @ _LUMA < MAX_IRIS_TO_SCLERA * (col[1] @ _LUMA):
        return None
    return EyeSample(colours=col, pixels=np.array([len(a), len(b)]))


def eye_albedo(sample: EyeSample, sh: np.ndarray, forward: np.ndarray) -> np.ndarray | None:
    """The sampled iris colour divided by the irradiance of ``sh (27,)`` for the unit normal
    ``forward (3,)`` (camera space, the face's outward front) -> ``(3,)`` in [0, 1], or None when
    that irradiance is not positive."""
    n = np.asarray(forward, np.float64) / max(float(np.linalg.norm(forward)), 1e-12)
    irr = sh_irradiance(n, sh)
    if not (np.isfinite(irr).all() and (irr > 1e-3).all()):
        return None
    return np.clip(sample.colours[0] / irr, 0.0, 1.0)


class EyeColourEstimate:
    """The clip's iris colour: the mean of the first ``max_frames`` keyframes' :func:`eye_albedo`
    (thread-safe: keyframes are fitted in a worker).  :meth:`value` is ``(3,)`` float32 linear RGB,
    zeros until a keyframe gave one (the capture file's "none")."""

    def __init__(self, max_frames: int = 20):
        self.max_frames = int(max_frames)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._sum, self._n = np.zeros(3), 0

    def add(self, image_bgr: np.ndarray, landmarks, iris, sh: np.ndarray, forward: np.ndarray) -> bool:
        """Sample one keyframe; -> whether it counted."""
        with self._lock:
            if self._n >= self.max_frames:
                return False
        s = sample_eye_colours(image_bgr, landmarks, iris)
        alb = None if s is None else eye_albedo(s, sh, forward)
        if alb is None:
            return False
        with self._lock:
            self._sum, self._n = self._sum + alb, self._n + 1
        return True

    def value(self) -> np.ndarray:
        with self._lock:
            return (self._sum / max(self._n, 1)).astype(np.float32)
