"""Keypoint detector interface: one frame in, one :class:`Detection` (the main subject) out.

The capture pipeline, the face fitting and the evaluations only see this
module; backends (MediaPipe Holistic, :mod:`model_runtime.detectors.mediapipe`)
are created by name with :func:`model_runtime.detectors.make_detector`.

Conventions (all arrays ``float32``):

* 2D keypoints are pixels of the *input image*, (0, 0) = top-left corner of
  the top-left pixel, with a confidence in [0, 1] as the last column.
  Confidence 0 means "not detected / not available"; the coordinates of such
  a keypoint are 0 and must be ignored.
* 3D keypoints use camera axes: x right, y down, z forward (away from the
  camera), metres.  Body: relative to the pelvis keypoint; hands: relative to
  the wrist.
* ``left``/``right`` always mean the *person's* left/right (never image left).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, runtime_checkable

import numpy as np

from ..core.skeleton import BODY_KEYPOINT_NAMES, HAND21_NAMES

NUM_BODY_KEYPOINTS: Final[int] = len(BODY_KEYPOINT_NAMES)   # 24
NUM_HAND_KEYPOINTS: Final[int] = len(HAND21_NAMES)          # 21
NUM_FACE_LANDMARKS: Final[int] = 468                        # MediaPipe face mesh (without iris)
NUM_WHOLEBODY_KEYPOINTS: Final[int] = 133                   # COCO-WholeBody


@dataclass
class Detection:
    """Keypoints of one person (the main subject) in one frame.

    Attributes (shapes; ``float32`` unless noted):
        image_size: ``(width, height)`` of the input image in px.
        person: False when no person was found; then every confidence is 0.
        body_2d: ``(24, 3)`` x, y px + confidence, order
            :data:`model_runtime.core.skeleton.BODY_KEYPOINT_NAMES` (15 basic SMPL-H-like
            joints, then 9 extended: nose, eyes, ears, heels, big toes).
        body_3d: ``(24, 3)`` metres, pelvis-relative, camera axes (x right, y down,
            z forward); rows of undetected keypoints are 0.  Confidence = ``body_2d[:, 2]``.
        hands_2d: ``(2, 21, 3)`` [left, right] hand of the person, order
            :data:`model_runtime.core.skeleton.HAND21_NAMES`, x, y px + confidence.
        hands_3d: ``(2, 21, 3)`` metres, wrist-relative, camera axes; zeros for a hand
            that was not detected.
        hands_conf: ``(2,)`` per-hand confidence in [0, 1] (0 = not detected).
        face_box: ``(4,)`` x, y, w, h px of the face, or None when no face was found.
        face_landmarks: ``(468, 3)`` MediaPipe face-mesh landmarks: x, y px, z =
            MediaPipe's relative depth (same scale as x, i.e. px; smaller = closer
            to the camera; origin roughly at the head centre), or None.
        face_conf: confidence of the face (0 when ``face_landmarks`` is None).
        wholebody_2d: ``(133, 3)`` the same detection in COCO-WholeBody order
            (body 17, feet 6, face 68, left hand 21, right hand 21), x, y px +
            confidence; confidence 0 where the backend has no such point.
    """

    image_size: tuple[int, int]
    person: bool
    body_2d: np.ndarray
    body_3d: np.ndarray
    hands_2d: np.ndarray
    hands_3d: np.ndarray
    hands_conf: np.ndarray
    face_box: np.ndarray | None
    face_landmarks: np.ndarray | None
    wholebody_2d: np.ndarray
    face_conf: float = 0.0
    extras: dict = field(default_factory=dict)
    """Backend-specific extras (not part of the contract), e.g. raw landmarks."""

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> "Detection":
        """A frame with no person: all confidences 0, no face."""
        return cls(
            image_size=(int(image_size[0]), int(image_size[1])),
            person=False,
            body_2d=np.zeros((NUM_BODY_KEYPOINTS, 3), np.float32),
            body_3d=np.zeros((NUM_BODY_KEYPOINTS, 3), np.float32),
            hands_2d=np.zeros((2, NUM_HAND_KEYPOINTS, 3), np.float32),
            hands_3d=np.zeros((2, NUM_HAND_KEYPOINTS, 3), np.float32),
            hands_conf=np.zeros(2, np.float32),
            face_box=None,
            face_landmarks=None,
            wholebody_2d=np.zeros((NUM_WHOLEBODY_KEYPOINTS, 3), np.float32),
        )

    def validate(self) -> "Detection":
        """Check every array's shape (raises ``ValueError`` naming the field); returns self."""
        expected = {
            "body_2d": (NUM_BODY_KEYPOINTS, 3), "body_3d": (NUM_BODY_KEYPOINTS, 3),
            "hands_2d": (2, NUM_HAND_KEYPOINTS, 3), "hands_3d": (2, NUM_HAND_KEYPOINTS, 3),
            "hands_conf": (2,), "wholebody_2d": (NUM_WHOLEBODY_KEYPOINTS, 3),
        }
        if self.face_box is not None:
            expected["face_box"] = (4,)
        if self.face_landmarks is not None:
            expected["face_landmarks"] = (NUM_FACE_LANDMARKS, 3)
        for name, shape in expected.items():
            got = np.shape(getattr(self, name))
            if got != shape:
                raise ValueError(f"Detection.{name} has shape {got}, expected {shape}")
        return self


@dataclass
class HandDetection:
    """One hand found in a hand-only image (no body), see :meth:`Detector.detect_hand`.

    Attributes:
        side: the person's hand side as classified by the backend.
        keypoints_2d: ``(21, 3)`` x, y px + confidence, order ``HAND21_NAMES``.
        keypoints_3d: ``(21, 3)`` metres, wrist-relative, camera axes.
        confidence: detection confidence in [0, 1].
        extras: backend-specific extras, e.g. MediaPipe's own metric ``world_3d``.
    """

    side: Literal["left", "right"]
    keypoints_2d: np.ndarray
    keypoints_3d: np.ndarray
    confidence: float
    extras: dict = field(default_factory=dict)
    """Backend-specific extras (not part of the contract)."""


@runtime_checkable
class Detector(Protocol):
    """A keypoint detector; instances hold models and must be closed (or used as context managers)."""

    name: str

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int | None = None) -> Detection:
        """Detect the main person in one frame.

        Args:
            image_bgr: ``(H, W, 3)`` uint8 BGR image (OpenCV's layout).
            timestamp_ms: frame time for video/tracking mode (must increase between
                calls); ``None`` = independent still image (no tracking).
        """
        ...

    def detect_hand(self, image_bgr: np.ndarray, side_hint: str | None = None) -> HandDetection | None:
        """Detect one hand in a hand-only crop (no body visible); None if none found.

        ``side_hint`` ("left"/"right") picks that hand if several are found.
        """
        ...

    def reset(self) -> None:
        """Forget any tracking state (video mode) so that the next frame is treated as the first
        of a new clip; the models stay loaded.  The capture pipeline calls it before every job."""
        ...

    def close(self) -> None:
        """Release the models; the detector is unusable afterwards."""
        ...
