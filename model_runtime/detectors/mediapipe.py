"""MediaPipe backend of :mod:`model_runtime.detectors.base`.

Uses the legacy ``mediapipe.solutions`` API (mediapipe 0.10.21):

* :class:`mediapipe.solutions.holistic.Holistic` for whole frames: pose (33
  landmarks + metric world landmarks), face mesh (468, 478 with refinement)
  and both hands (21 each).  Two graphs are kept: ``static_image_mode=True``
  for independent images (``timestamp_ms=None``) and ``False`` (tracking,
  smoothing) for video frames.
* :class:`mediapipe.solutions.hands.Hands` for hand-only crops
  (:meth:`MediaPipeDetector.detect_hand`): Holistic needs a body to find the
  hands and finds none in a crop that shows only a hand.

No network access: every model used here ships inside the wheel.  Pose model
complexity 0 and 2 are *not* shipped (mediapipe would download them); they
are accepted only if their ``.tflite`` has been installed by hand, otherwise
:class:`~model_runtime.core.errors.ModelFileError` names the missing file.

Mappings and approximations (documented in ``docs/evaluation.md`` too):

* **Body keypoints** (``skeleton.BODY_KEYPOINT_NAMES``) come from the
  calibrated :class:`BodyMap` (asset ``assets/mediapipe_body_map.npz``, fitted
  by ``tools/fit_mediapipe_body_map.py`` on rendered ground truth of training
  MoCap actors): per keypoint an affine combination of a few pose landmarks
  (``weights_2d`` for pixels, ``weights_3d`` for world landmarks) plus, in 3D,
  an offset in a body-local frame (:func:`body_local_frames`).  The fit starts
  from (ridge prior) the hand-set :data:`BODY_FROM_POSE`, kept as the
  uncalibrated reference (:meth:`BodyMap.handset`).  MediaPipe hips/shoulders
  are surface-like (COCO-style) points, not SMPL-H joint centres, so the
  hand-set map uses:
  ``pelvis`` = mid-hip moved up by :data:`PELVIS_UP` of the hip->shoulder
  vector; ``left/right_hip`` = mid-hip +- :data:`HIP_WIDTH_SCALE` x half the
  hip vector (SMPL hip joints are ~12 cm apart, MediaPipe hips ~20 cm);
  ``neck`` = mid-shoulders; ``head`` = mid-ears.  Extended keypoints are
  direct: nose, eyes, ears, heels, big toe = ``foot_index``.
  The confidence of a combined keypoint is the smallest visibility of the
  landmarks it uses (2D weight magnitude >= :data:`_USE_WEIGHT`).
* **Hands**: MediaPipe's 21 hand landmarks are already in ``HAND21_NAMES``
  order.  Holistic's ``left_hand_landmarks`` is the *person's* left hand
  (verified on CMU Panoptic images labelled per hand side, see
  ``tests/test_detector.py``).  Holistic reports no hand score, so a found
  hand has confidence 1.  Metric wrist-relative 3D: the normalised landmarks
  (x, y in the image, z relative depth at the scale of x) are converted to px
  and scaled so that wrist -> middle-finger MCP is :data:`HAND_PALM_LENGTH_M`
  (an adult average; the true hand size is unknown from one image).
* **Hands in hand-only crops** (``Hands`` solution): its handedness label
  assumes a mirrored selfie image, so for ordinary (unmirrored) images the
  label is swapped to get the person's side.
* **Face**: the first 468 face-mesh landmarks (x, y px, z = relative depth
  x image width); box = landmark extent.  Holistic gives no face score: 1.
  With the refined mesh, ``extras['iris_landmarks_px'] (10, 3)``: landmarks 468-477 (iris centre
  and four rim points of the person's right eye, then of the left), same units.
* **Face check** (``face_check=True``): Holistic finds the face in a region derived from the
  *pose* landmarks, and the pose model can put its face points on another structure (AFLW2000
  ``image00251``: a side view with a raised arm, pose nose and eyes on the cheek, the face mesh
  turned by ~90 deg).  Each frame compares the mesh's nose tip, eye centres and mouth corners with
  the pose's (:func:`face_pose_disagreement`, in face sizes; 0.04-0.14 on correct faces of the
  real images and talking clips).  Above :data:`FACE_POSE_DISAGREEMENT_MAX` the standalone
  Face Mesh (its own BlazeFace detector, refined mesh) is run on a square crop around the head
  (:func:`head_crop`); its face replaces Holistic's (``extras['face_source'] = 'face_mesh'``), and
  when it finds no face Holistic's is dropped (``'rejected'``).  The extra graph runs only on such
  frames, so ordinary frames cost a few numpy operations more.
* **Face points of the body**: where the face check keeps a face mesh, the body's nose and eyes are
  placed by the mesh (:func:`body_face_points_from_mesh`, at the mesh points where the body model's
  keypoint vertices lie): the pose model's face points are coarse on turned or tilted heads, and the
  image-aligned fit places the avatar's head on them.
* **COCO-WholeBody 133**: body 17 from the pose landmarks; feet: big toe =
  ``foot_index``, heel = ``heel``, small toe is not available (confidence 0);
  face 68 via :data:`model_runtime.face.landmarks.MP468_TO_IBUG68`; hands as above.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from ..core.errors import ModelFileError
from ..core.safe_npz import load_npz
from ..core.skeleton import BODY_KEYPOINT_NAMES
from ..face.landmarks import MP468_TO_IBUG68, MP_LEFT_EYE_RING, MP_RIGHT_EYE_RING
from .base import (
    NUM_BODY_KEYPOINTS, NUM_FACE_LANDMARKS, NUM_HAND_KEYPOINTS, NUM_WHOLEBODY_KEYPOINTS, Detection,
    HandDetection
)
from ..core.asset_io import ASSET_DIR as _ASSET_DIR

# --- MediaPipe Pose landmark indices (BlazePose 33) ---
POSE_LANDMARK_NAMES: Final[tuple[str, ...]] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index",
)
_P: Final[dict[str, int]] = {n: i for i, n in enumerate(POSE_LANDMARK_NAMES)}

PELVIS_UP: Final[float] = 0.10
"""SMPL's pelvis joint lies above MediaPipe's mid-hip: this fraction of mid-hip -> mid-shoulder."""
HIP_WIDTH_SCALE: Final[float] = 0.65
"""SMPL hip-joint separation / MediaPipe hip-landmark separation (~0.13 m / ~0.20 m)."""
HAND_PALM_LENGTH_M: Final[float] = 0.09
"""Assumed wrist -> middle-finger MCP length of an adult hand, metres (scales hand 3D)."""


def _body_weights() -> dict[str, dict[str, float]]:
    """Body keypoint name -> {pose landmark name: weight} (weights sum to 1)."""
    def mid(a: str, b: str) -> dict[str, float]:
        return {a: 0.5, b: 0.5}

    up = PELVIS_UP
    pelvis = {"left_hip": 0.5 * (1 - up), "right_hip": 0.5 * (1 - up),
              "left_shoulder": 0.5 * up, "right_shoulder": 0.5 * up}
    s = HIP_WIDTH_SCALE
    return {
        "pelvis": pelvis,
        "left_hip": {"left_hip": 0.5 * (1 + s), "right_hip": 0.5 * (1 - s)},
        "right_hip": {"right_hip": 0.5 * (1 + s), "left_hip": 0.5 * (1 - s)},
        "left_knee": {"left_knee": 1.0}, "right_knee": {"right_knee": 1.0},
        "left_ankle": {"left_ankle": 1.0}, "right_ankle": {"right_ankle": 1.0},
        "neck": mid("left_shoulder", "right_shoulder"),
        "head": mid("left_ear", "right_ear"),
        "left_shoulder": {"left_shoulder": 1.0}, "right_shoulder": {"right_shoulder": 1.0},
        "left_elbow": {"left_elbow": 1.0}, "right_elbow": {"right_elbow": 1.0},
        "left_wrist": {"left_wrist": 1.0}, "right_wrist": {"right_wrist": 1.0},
        "nose": {"nose": 1.0},
        "left_eye": {"left_eye": 1.0}, "right_eye": {"right_eye": 1.0},
        "left_ear": {"left_ear": 1.0}, "right_ear": {"right_ear": 1.0},
        "left_heel": {"left_heel": 1.0}, "right_heel": {"right_heel": 1.0},
        "left_big_toe": {"left_foot_index": 1.0}, "right_big_toe": {"right_foot_index": 1.0},
    }


BODY_FROM_POSE: Final[np.ndarray] = np.zeros((NUM_BODY_KEYPOINTS, len(POSE_LANDMARK_NAMES)), np.float32)
"""``(24, 33)`` body keypoint = ``BODY_FROM_POSE @ pose_landmarks`` (rows sum to 1)."""
for _row, _name in enumerate(BODY_KEYPOINT_NAMES):
    for _lm, _w in _body_weights()[_name].items():
        BODY_FROM_POSE[_row, _P[_lm]] = _w
BODY_FROM_POSE.setflags(write=False)
_PELVIS_ROW: Final[int] = BODY_KEYPOINT_NAMES.index("pelvis")

BODY_MAP_PATH: Final[Path] = _ASSET_DIR / "mediapipe_body_map.npz"
BODY_MAP_VERSION: Final[int] = 1
_USE_WEIGHT: Final[float] = 0.1
"""A landmark whose |2D weight| reaches this counts for a keypoint's confidence."""


def body_local_frames(world: np.ndarray) -> np.ndarray:
    """Body-local orthonormal frames from pose world landmarks.

    Args:
        world: ``(..., 33, 3)`` MediaPipe world landmarks (metres).
    Returns:
        ``(..., 3, 3)`` columns = axes: x towards the person's left (hips +
        shoulders), y from mid-hip to mid-shoulder (orthogonalised), z = x cross y.
    """
    lh, rh, ls, rs = (world[..., _P[n], :] for n in ("left_hip", "right_hip", "left_shoulder", "right_shoulder"))
    x = (lh - rh) + (ls - rs)
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
    y = 0.5 * (ls + rs - lh - rh)
    y = y - (y * x).sum(-1, keepdims=True) * x
    y = y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-9)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


@dataclass(frozen=True)
class BodyMap:
    """Pose landmarks -> body keypoints (see module docstring).

    Attributes:
        weights_2d: ``(24, 33)`` rows sum to 1, applied to pixel landmarks.
        weights_3d: ``(24, 33)`` rows sum to 1, applied to world landmarks.
        offsets_3d: ``(24, 3)`` metres in the :func:`body_local_frames` frame.
        provenance: how the map was made.
        uses_mask: ``(24, 33)`` bool, landmarks whose visibility limits each keypoint's
            confidence; None: those with ``|weights_2d| >= _USE_WEIGHT``.
    """

    weights_2d: np.ndarray
    weights_3d: np.ndarray
    offsets_3d: np.ndarray
    provenance: str = ""
    uses_mask: np.ndarray | None = None

    @classmethod
    def handset(cls) -> "BodyMap":
        """The uncalibrated hand-set map (:data:`BODY_FROM_POSE`, no offsets)."""
        return cls(BODY_FROM_POSE, BODY_FROM_POSE, np.zeros((NUM_BODY_KEYPOINTS, 3), np.float32), "hand-set",
                   uses_mask=BODY_FROM_POSE != 0)

    @classmethod
    def load(cls, path: str | Path = BODY_MAP_PATH) -> "BodyMap":
        """Read and validate the asset; :class:`ModelFileError` names the bad field."""
        path = Path(path)
        if not path.exists():
            raise ModelFileError(path, None, "is missing (rebuild: tools/fit_mediapipe_body_map.py fit)")
        d = load_npz(path)
        version = int(d.get("version", -1))
        if version != BODY_MAP_VERSION:
            raise ModelFileError(path, "version", f"is {version}, this code reads version {BODY_MAP_VERSION}")
        for field, names in (("keypoint_names", BODY_KEYPOINT_NAMES), ("landmark_names", POSE_LANDMARK_NAMES)):
            if field not in d or tuple(str(n) for n in d[field]) != tuple(names):
                raise ModelFileError(path, field, "is missing or not in the order the detector uses")
        shapes = {"weights_2d": (NUM_BODY_KEYPOINTS, 33), "weights_3d": (NUM_BODY_KEYPOINTS, 33),
                  "offsets_3d": (NUM_BODY_KEYPOINTS, 3)}
        for field, shape in shapes.items():
            a = d.get(field)
            if a is None or a.shape != shape or not np.isfinite(a).all():
                raise ModelFileError(path, field, f"must be a finite {shape} array, got "
                                     f"{None if a is None else a.shape}")
        for field in ("weights_2d", "weights_3d"):
            if not np.allclose(d[field].sum(1), 1.0, atol=1e-4):
                raise ModelFileError(path, field, "rows must sum to 1 (affine combinations)")
        return cls(*(d[f].astype(np.float32) for f in shapes), provenance=str(d.get("provenance", "")))

    def uses(self) -> np.ndarray:
        """``(24, 33)`` bool: landmarks whose visibility limits each keypoint's confidence."""
        return np.abs(self.weights_2d) >= _USE_WEIGHT if self.uses_mask is None else self.uses_mask

    def apply_2d(self, pose_px: np.ndarray) -> np.ndarray:
        """``(..., 33, >=2)`` px landmarks -> ``(..., 24, 2)`` px keypoints."""
        return self.weights_2d @ pose_px[..., :2]

    def apply_3d(self, world: np.ndarray) -> np.ndarray:
        """``(..., 33, 3)`` world landmarks -> ``(..., 24, 3)`` metres, pelvis-relative."""
        k = self.weights_3d @ world + self.offsets_3d @ np.swapaxes(body_local_frames(world), -1, -2)
        return k - k[..., _PELVIS_ROW:_PELVIS_ROW + 1, :]

# COCO-WholeBody: 17 body keypoints and 6 foot keypoints from pose landmarks (-1 = not available).
WHOLEBODY_BODY_FROM_POSE: Final[np.ndarray] = np.array([_P[n] for n in (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle")])
WHOLEBODY_FEET_FROM_POSE: Final[np.ndarray] = np.array([
    _P["left_foot_index"], -1, _P["left_heel"], _P["right_foot_index"], -1, _P["right_heel"]])
"""left_big_toe, left_small_toe, left_heel, right_big_toe, right_small_toe, right_heel."""

MEDIAPIPE_TO_IBUG68: Final[np.ndarray] = MP468_TO_IBUG68
"""The detector's name for :data:`model_runtime.face.landmarks.MP468_TO_IBUG68` (the same array)."""

_WB_FACE: Final[slice] = slice(23, 91)
_WB_LHAND: Final[slice] = slice(91, 112)
_WB_RHAND: Final[slice] = slice(112, 133)
_PALM: Final[tuple[int, int]] = (0, 9)   # hand landmark indices: wrist, middle-finger MCP


#: the body keypoints the face mesh places (:func:`body_face_points_from_mesh`): nose, then the eyes
#: (the person's left, right) with their 16-point rings and (outer, inner) corners
_NOSE_ROW: Final[int] = BODY_KEYPOINT_NAMES.index("nose")
_EYES: Final[tuple[tuple[int, tuple[int, ...], tuple[int, int]], ...]] = (
    (BODY_KEYPOINT_NAMES.index("left_eye"), MP_LEFT_EYE_RING, (263, 362)),
    (BODY_KEYPOINT_NAMES.index("right_eye"), MP_RIGHT_EYE_RING, (33, 133)),
)
_MOUTH: Final[tuple[int, int]] = (13, 14)          # inner lips' middle
#: where the body model's keypoint vertices sit on the merged face, in the built-in model's rest pose
#: (``build_full_model``; the same for any identity to ~1 mm): the nose 38 % of the way from mesh
#: point 4 (the nose's front above the tip) to point 1 (the tip); each eye 0.195 eye widths above its
#: ring's centre (away from the mouth, across the corner-to-corner axis) and 0.04 towards the inner
#: corner, i.e. near the upper lid of an open eye, but moving with the head, not with a blink
NOSE_FROM_4_TO_1: Final[float] = 0.38
EYE_UP: Final[float] = 0.195
EYE_IN: Final[float] = 0.04


def body_face_points_from_mesh(body_2d: np.ndarray, face_landmarks: np.ndarray) -> None:
    """Replace the body's nose and eyes ``body_2d (24, 3)`` (x, y px; confidences kept) in place by
    points of the face mesh ``(468, >=2)`` px that correspond to the body model's keypoint vertices
    (:data:`NOSE_FROM_4_TO_1`, :data:`EYE_UP`, :data:`EYE_IN`).  The pose model places its face points
    coarsely: on a head tilted back (LivePortrait d3) its eyes sit a median 0.16-0.24 eye distances
    below the mesh's eye centres, where on frontal faces (d0) they agree within 0.02-0.06; the
    avatar's head, fitted to these points, sat 0.25 face sizes off the face (docs/face.md)."""
    lm = np.asarray(face_landmarks, np.float64)[:, :2]
    body_2d[_NOSE_ROW, :2] = lm[4] + NOSE_FROM_4_TO_1 * (lm[1] - lm[4])
    mouth = lm[list(_MOUTH)].mean(0)
    for row, ring, (outer, inner) in _EYES:
        centre = lm[list(ring)].mean(0)
        axis = lm[inner] - lm[outer]
        width = float(np.hypot(*axis))
        if width < 1e-6:
            body_2d[row, :2] = centre
            continue
        axis /= width
        up = np.array([axis[1], -axis[0]])
        if up @ (centre - mouth) < 0:
            up = -up
        body_2d[row, :2] = centre + width * (EYE_UP * up + EYE_IN * axis)


def _pose_model_path(model_complexity: int) -> str:
    import mediapipe

    name = {0: "pose_landmark_lite", 1: "pose_landmark_full", 2: "pose_landmark_heavy"}[model_complexity]
    return os.path.join(os.path.dirname(mediapipe.__file__), "modules", "pose_landmark", f"{name}.tflite")


def _landmarks(lms, with_visibility: bool) -> np.ndarray:
    """Protobuf landmark list -> ``(N, 4)`` float32 (x, y, z normalised, visibility or 1)."""
    n = len(lms.landmark)
    if with_visibility:
        flat = np.fromiter((v for l in lms.landmark for v in (l.x, l.y, l.z, l.visibility)), np.float32, 4 * n)
        return flat.reshape(n, 4)
    flat = np.fromiter((v for l in lms.landmark for v in (l.x, l.y, l.z)), np.float32, 3 * n).reshape(n, 3)
    return np.concatenate([flat, np.ones((n, 1), np.float32)], axis=1)


def _to_pixels(lm: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(..., N, 4)`` normalised (x, y, z, c) -> ``(..., N, 4)`` px (z scaled like x)."""
    return lm * np.array([width, height, width, 1.0], np.float32)


def hand_metric_3d(hand_px: np.ndarray) -> np.ndarray:
    """Metric wrist-relative hand keypoints from pixel-scaled landmarks.

    Args:
        hand_px: ``(..., 21, >=3)`` x, y px and z relative depth in px (MediaPipe).
    Returns:
        ``(..., 21, 3)`` metres, wrist-relative, camera axes, scaled so that
        wrist -> middle MCP = :data:`HAND_PALM_LENGTH_M`.
    """
    p = hand_px[..., :3] - hand_px[..., :1, :3]
    palm = np.linalg.norm(p[..., _PALM[1], :], axis=-1)[..., None, None]
    return (p * (HAND_PALM_LENGTH_M / np.maximum(palm, 1e-6))).astype(np.float32)


FACE_POSE_DISAGREEMENT_MAX: Final[float] = 0.25
"""Mean distance (in face sizes, :func:`face_pose_disagreement`) between the face mesh's and the pose's
nose, eyes and mouth corners above which Holistic's face is re-checked: a quarter of the face, about
the eye-to-nose distance, i.e. the two models put these points on different features."""
HEAD_CROP_SCALE: Final[float] = 2.0
"""Side of the re-check crop / the larger side of the box around Holistic's face and the pose's face points."""
# mesh points (averaged) <-> pose landmarks: nose tip, eye centres (person's left, right), mouth corners
_MESH_FACE_POINTS: Final[tuple[tuple[int, ...], ...]] = ((1,), (263, 362), (33, 133), (291,), (61,))
_POSE_FACE_POINTS: Final[tuple[int, ...]] = (_P["nose"], _P["left_eye"], _P["right_eye"], _P["mouth_left"],
                                             _P["mouth_right"])
_MESH_IDS: Final[np.ndarray] = np.array([i for ix in _MESH_FACE_POINTS for i in ix])
_MESH_MEAN: Final[np.ndarray] = np.zeros((len(_MESH_FACE_POINTS), len(_MESH_IDS)), np.float32)
_k = 0
for _r, _ix in enumerate(_MESH_FACE_POINTS):
    _MESH_MEAN[_r, _k:_k + len(_ix)] = 1.0 / len(_ix)
    _k += len(_ix)
_POSE_IDS: Final[np.ndarray] = np.array(_POSE_FACE_POINTS)


def face_pose_disagreement(face_px: np.ndarray, pose_px: np.ndarray) -> float:
    """Mean 2D distance between the face mesh's nose tip, eye centres and mouth corners and the same
    pose landmarks, divided by ``sqrt(w h)`` of the mesh's box.

    Args:
        face_px: ``(468, >=2)`` face-mesh landmarks, px.
        pose_px: ``(33, >=2)`` pose landmarks, px.
    """
    xy = face_px[:, :2]
    wh = xy.max(0) - xy.min(0)
    size = max(float(np.sqrt(max(wh[0] * wh[1], 0.0))), 1e-6)
    d = _MESH_MEAN @ xy[_MESH_IDS] - pose_px[_POSE_IDS, :2]
    return float(np.sqrt((d * d).sum(1)).mean() / size)


def head_crop(face_px: np.ndarray, pose_px: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """Square crop ``(x0, y0, x1, y1)`` (clipped to the image) centred on the box around the face mesh and the
    pose's face landmarks (0-10), side :data:`HEAD_CROP_SCALE` x its larger side."""
    pts = np.concatenate([face_px[:, :2], pose_px[:11, :2]])
    lo, hi = pts.min(0), pts.max(0)
    c, half = 0.5 * (lo + hi), 0.5 * HEAD_CROP_SCALE * float((hi - lo).max())
    x0, y0 = (int(max(0, np.floor(c[i] - half))) for i in (0, 1))
    x1, y1 = int(min(width, np.ceil(c[0] + half))), int(min(height, np.ceil(c[1] + half)))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def _check_image(image_bgr: np.ndarray) -> None:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 \
            or image_bgr.dtype != np.uint8 or min(image_bgr.shape[:2]) < 1:
        shape = getattr(image_bgr, "shape", None)
        dtype = getattr(image_bgr, "dtype", type(image_bgr).__name__)
        raise ValueError(f"detector input must be an (H, W, 3) uint8 BGR image, got shape {shape} dtype {dtype}")


class MediaPipeDetector:
    """MediaPipe Holistic detector (see module docstring for the mappings).

    Args:
        device: accepted for interface symmetry; MediaPipe's Python solutions run on CPU.
        model_complexity: pose model 0 (lite), 1 (full, shipped), 2 (heavy).
        refine_face_landmarks: use the attention face mesh (better eyes/lips, ~10 % slower).
        min_detection_confidence, min_tracking_confidence: MediaPipe thresholds.
        body_map: landmark -> body keypoint map (default: the calibrated asset).
        face_check: re-check a face that disagrees with the pose (module docstring, "Face check").
    """

    name = "mediapipe"

    def __init__(self, device: str = "cpu", model_complexity: int = 1, refine_face_landmarks: bool = True,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 body_map: BodyMap | None = None, face_check: bool = True):
        if model_complexity not in (0, 1, 2):
            raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity}")
        path = _pose_model_path(model_complexity)
        if not os.path.exists(path):
            raise ModelFileError(path, None, f"is missing: MediaPipe pose model_complexity={model_complexity} "
                                 "is not shipped with the mediapipe wheel and will not be downloaded; "
                                 "use model_complexity=1 or install the file by hand")
        self.device = device
        self.face_check = bool(face_check)
        self.body_map = BodyMap.load() if body_map is None else body_map
        self._body_uses = self.body_map.uses()                                          # (24, 33)
        self._opts = dict(model_complexity=model_complexity, refine_face_landmarks=refine_face_landmarks,
                          min_detection_confidence=min_detection_confidence,
                          min_tracking_confidence=min_tracking_confidence)
        self._graphs: dict[str, object] = {}
        self._last_ts: int | None = None
        self._closed = False

    # -- graphs (created lazily: a user of only one mode pays for one) --
    def _graph(self, kind: str):
        if self._closed:
            raise RuntimeError("MediaPipeDetector is closed")
        g = self._graphs.get(kind)
        if g is None:
            import mediapipe as mp

            if kind == "static":
                g = mp.solutions.holistic.Holistic(static_image_mode=True, **self._opts)
            elif kind == "video":
                g = mp.solutions.holistic.Holistic(static_image_mode=False, smooth_landmarks=True, **self._opts)
            elif kind == "face_mesh":   # the face check's standalone Face Mesh (own BlazeFace detector)
                g = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True, max_num_faces=1, refine_landmarks=self._opts["refine_face_landmarks"],
                    min_detection_confidence=self._opts["min_detection_confidence"])
            else:  # "hands": hand-only crops
                g = mp.solutions.hands.Hands(
                    static_image_mode=True, max_num_hands=2, model_complexity=1,
                    min_detection_confidence=self._opts["min_detection_confidence"])
            self._graphs[kind] = g
        return g

    def _reset_video(self) -> None:
        g = self._graphs.pop("video", None)
        if g is not None:
            g.close()

    def reset(self) -> None:
        """See :meth:`model_runtime.detectors.base.Detector.reset`: the video graph (MediaPipe's
        tracking state) is dropped and rebuilt lazily by the next video-mode frame."""
        self._reset_video()
        self._last_ts = None

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int | None = None) -> Detection:
        """See :meth:`model_runtime.detectors.base.Detector.detect`.

        In video mode a timestamp that does not increase (a seek, a new clip)
        restarts tracking instead of failing.
        """
        _check_image(image_bgr)
        import cv2

        if timestamp_ms is None:
            graph = self._graph("static")
        else:
            if self._last_ts is not None and timestamp_ms <= self._last_ts:
                self._reset_video()
            self._last_ts = int(timestamp_ms)
            graph = self._graph("video")
        height, width = image_bgr.shape[:2]
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        det = self._to_detection(graph.process(rgb), width, height)
        if self.face_check and det.face_landmarks is not None:
            self._check_face(rgb, det)
            if det.face_landmarks is not None:     # a face the check kept: its nose and eyes are the body's
                body_face_points_from_mesh(det.body_2d, det.face_landmarks)
        return det

    def _check_face(self, rgb: np.ndarray, det: Detection) -> None:
        """The face check (module docstring): keep, replace or drop Holistic's face in ``det``."""
        pose = det.extras["pose_landmarks_px"]
        score = face_pose_disagreement(det.face_landmarks, pose)
        det.extras["face_pose_disagreement"] = score
        if score <= FACE_POSE_DISAGREEMENT_MAX:
            det.extras["face_source"] = "holistic"
            return
        height, width = rgb.shape[:2]
        x0, y0, x1, y1 = head_crop(det.face_landmarks, pose, width, height)
        res = self._graph("face_mesh").process(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        if not res.multi_face_landmarks:
            det.face_landmarks, det.face_box, det.face_conf = None, None, 0.0
            det.extras.pop("iris_landmarks_px", None)
            det.wholebody_2d[_WB_FACE] = 0.0
            det.extras["face_source"] = "rejected"
            return
        face = _to_pixels(_landmarks(res.multi_face_landmarks[0], False), x1 - x0, y1 - y0)
        face[:, :2] += np.array([x0, y0], np.float32)
        self._set_face(det, face)
        det.extras["face_source"] = "face_mesh"

    def _to_detection(self, res, width: int, height: int) -> Detection:
        det = Detection.empty((width, height))
        if res.pose_landmarks is None:
            return det
        pose = _to_pixels(_landmarks(res.pose_landmarks, True), width, height)          # (33, 4)
        conf = np.where(self._body_uses, pose[None, :, 3], np.inf).min(axis=1)          # (24,)
        det.person = True
        det.body_2d = np.concatenate([self.body_map.apply_2d(pose), conf[:, None]], 1).astype(np.float32)
        world = _landmarks(res.pose_world_landmarks, True)[:, :3]                       # (33, 3) m, y down
        det.body_3d = self.body_map.apply_3d(world).astype(np.float32)
        det.extras["pose_world_landmarks"] = world

        wb = det.wholebody_2d
        wb[:17] = pose[WHOLEBODY_BODY_FROM_POSE][:, [0, 1, 3]]
        feet = pose[np.maximum(WHOLEBODY_FEET_FROM_POSE, 0)][:, [0, 1, 3]]
        wb[17:23] = np.where((WHOLEBODY_FEET_FROM_POSE >= 0)[:, None], feet, 0.0)

        for side, lms, sl in ((0, res.left_hand_landmarks, _WB_LHAND), (1, res.right_hand_landmarks, _WB_RHAND)):
            if lms is None:
                continue
            hand = _to_pixels(_landmarks(lms, False), width, height)                   # (21, 4), conf 1
            det.hands_2d[side] = hand[:, [0, 1, 3]]
            det.hands_3d[side] = hand_metric_3d(hand)
            det.hands_conf[side] = 1.0
            wb[sl] = det.hands_2d[side]

        if res.face_landmarks is not None:
            self._set_face(det, _to_pixels(_landmarks(res.face_landmarks, False), width, height))
        det.extras["pose_landmarks_px"] = pose
        return det

    @staticmethod
    def _set_face(det: Detection, face_all: np.ndarray) -> None:
        """``(468 or 478, 4)`` px face-mesh landmarks -> the face fields of ``det``."""
        face = face_all[:NUM_FACE_LANDMARKS]
        det.face_landmarks = face[:, :3].copy()
        det.extras.pop("iris_landmarks_px", None)
        if len(face_all) >= NUM_FACE_LANDMARKS + 10:   # refined mesh: iris centre + 4 rim points per eye
            det.extras["iris_landmarks_px"] = face_all[NUM_FACE_LANDMARKS:NUM_FACE_LANDMARKS + 10, :3].copy()
        lo, hi = face[:, :2].min(0), face[:, :2].max(0)
        det.face_box = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], np.float32)
        det.face_conf = 1.0
        det.wholebody_2d[_WB_FACE] = face[MP468_TO_IBUG68][:, [0, 1, 3]]

    def detect_hand(self, image_bgr: np.ndarray, side_hint: str | None = None) -> HandDetection | None:
        """One hand in a hand-only crop (MediaPipe Hands); see the Detector protocol.

        Also returns MediaPipe's own metric world landmarks (hand-centred, metres) in
        ``extras["world_3d"]`` re-centred on the wrist, for comparison.
        """
        _check_image(image_bgr)
        if side_hint not in (None, "left", "right"):
            raise ValueError(f"side_hint must be 'left', 'right' or None, got {side_hint!r}")
        import cv2

        res = self._graph("hands").process(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        if not res.multi_hand_landmarks:
            return None
        height, width = image_bgr.shape[:2]
        found = []
        for lms, world, handed in zip(res.multi_hand_landmarks, res.multi_hand_world_landmarks,
                                      res.multi_handedness):
            cls = handed.classification[0]
            # MediaPipe labels assume a mirrored (selfie) image: swap for ordinary images.
            side = "left" if cls.label == "Right" else "right"
            found.append((side == side_hint, float(cls.score), side, lms, world))
        _, score, side, lms, world = max(found, key=lambda f: (f[0], f[1]))
        hand = _to_pixels(_landmarks(lms, False), width, height)
        w3 = _landmarks(world, False)[:, :3]
        return HandDetection(side=side, keypoints_2d=hand[:, [0, 1, 3]] * np.array([1, 1, score], np.float32),
                             keypoints_3d=hand_metric_3d(hand), confidence=score,
                             extras={"world_3d": (w3 - w3[:1]).astype(np.float32)})

    def close(self) -> None:
        for g in self._graphs.values():
            g.close()
        self._graphs.clear()
        self._closed = True

    def __enter__(self) -> "MediaPipeDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
