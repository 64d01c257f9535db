"""The capture's face stage with FaceNet: ``--face net`` and ``--face net+fit`` (see :mod:`.stage`).

* :class:`NetFaceStage` (``net``): FaceNet on the face box's crop of every frame gives the
  expression, the lighting and the head pose; identity and albedo are the running means of its
  predictions over the clip's first ``identity_frames`` face frames, then frozen (as the fit's
  are).  The ``eyeLook*`` keys come from the iris landmarks (:mod:`.gaze`, as in the fit's stage)
  when the detection has them.  Nothing to fit on keyframes: :meth:`fit_appearance` returns the
  latest lighting.
* :class:`NetFitFaceStage` (``net+fit``): the fit's stage (:class:`.stage.FaceFitStage`: landmark
  tracker every frame, closed-form appearance on keyframes) with FaceNet as its initialisation:
  on a clip's first face frame and after a lost face the tracker starts from FaceNet's pose,
  expression and identity (instead of a similarity pose and the mean face), and the appearance
  starts from FaceNet's albedo and lighting until the first keyframe fit.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..detectors.base import Detection
from .eye_colour import FACE_FORWARD, EyeColourEstimate
from .facenet import FaceNet
from .gaze import GazeEstimator, angles_to_keys
from .stage import FaceFitStage


def usable_box(det: Detection) -> np.ndarray | None:
    """The detection's face box ``(1, 4)`` when it is finite and at least 8 px, else None."""
    box = det.face_box
    if box is None or not np.all(np.isfinite(box)) or min(box[2], box[3]) < 8:
        return None
    return np.asarray(box, np.float64)[None]


class NetFaceStage:
    """``--face net``: every frame's parameters from FaceNet (module docstring).  ``track`` costs one
    crop + one network pass (~2-3 ms on one CPU core)."""

    def __init__(self, facenet: FaceNet, identity_frames: int = 20):
        self.net = facenet
        self.identity_frames = int(identity_frames)
        self.expression_names: tuple[str, ...] = tuple(facenet.model.exp_names)
        self._gaze_keys = np.array([n.startswith("eyeLook") for n in self.expression_names], bool)
        self._lock = threading.Lock()
        self.reset(np.eye(3))

    def reset(self, K: np.ndarray) -> None:
        sizes = self.net.model.sizes
        self.K = np.asarray(K, np.float64)
        self._gaze = GazeEstimator()                    # eyeLook* keys from the iris (face/gaze.py)
        self._n = 0
        self._identity = np.zeros(sizes["identity"], np.float64)
        self._iris = EyeColourEstimate(self.identity_frames)
        with self._lock:
            self._albedo = np.zeros(sizes["albedo"], np.float64)
            from .fit import ambient_sh

            self._sh = ambient_sh().astype(np.float64)

    def track(self, image_bgr: np.ndarray, detection: Detection) -> tuple[np.ndarray, Any] | None:
        box = usable_box(detection)
        if box is None:
            return None
        pred, R, t = self.net.predict(image_bgr, box, self.K)
        if not all(np.isfinite(a).all() for a in (pred.expression, pred.identity, pred.albedo, pred.sh, R, t)):
            return None
        with self._lock:
            if self._n < self.identity_frames:
                n = self._n
                self._identity = (self._identity * n + pred.identity[0]) / (n + 1)
                self._albedo = (self._albedo * n + pred.albedo[0]) / (n + 1)
                self._n = n + 1
            self._sh = pred.sh[0].astype(np.float64)
        expression = pred.expression[0].copy()
        lm = detection.face_landmarks
        if self._gaze_keys.any() and lm is not None:
            iris = detection.extras.get("iris_landmarks_px") if detection.extras else None
            gaze = angles_to_keys(self._gaze.update(lm, iris), self.expression_names)
            expression[self._gaze_keys] = gaze[self._gaze_keys]
        return expression, (R[0], t[0])

    def new_track(self) -> None:
        """Nothing to carry over: every frame is FaceNet's own (the gaze filter starts again)."""
        self._gaze = GazeEstimator()

    def fit_appearance(self, image_bgr: np.ndarray, detection: Detection, seed: Any) -> np.ndarray | None:
        """Nothing to fit: FaceNet gives the lighting of every frame -> the latest ``(27,)``; the
        keyframe's iris colour is sampled (:mod:`.eye_colour`) with it and the frame's rotation."""
        sh = self.current_sh()
        if seed is not None:
            self._iris.add(image_bgr, detection.face_landmarks, (detection.extras or {}).get("iris_landmarks_px"),
                           sh, np.asarray(seed[0], np.float64) @ FACE_FORWARD)
        return sh

    def current_sh(self) -> np.ndarray:
        with self._lock:
            return self._sh.astype(np.float32)

    def clip_params(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self._identity.astype(np.float32), self._albedo.astype(np.float32)

    def iris_colour(self) -> np.ndarray:
        return self._iris.value()

    def albedo_detail(self) -> np.ndarray:
        """None: the colour detail needs the landmark tracker's pose (:mod:`.albedo_detail`)."""
        return np.zeros((0, 3), np.float32)


class NetFitFaceStage(FaceFitStage):
    """``--face net+fit``: :class:`.stage.FaceFitStage` seeded by FaceNet (module docstring).  It sets the
    fit stage's start state (``_track``, ``_identity``, ``_albedo``, ``_sh``) before the fit's own ``track``."""

    def __init__(self, fitter, facenet: FaceNet, tracker=None):
        self.net = facenet
        super().__init__(fitter, tracker)

    def track(self, image_bgr: np.ndarray, detection: Detection) -> tuple[np.ndarray, Any] | None:
        from .tracker import FaceTrack

        box = usable_box(detection)
        if self._track is None and box is not None and detection.face_landmarks is not None:
            pred, R, t = self.net.predict(image_bgr, box, self.K)
            if all(np.isfinite(a).all() for a in (pred.expression, pred.identity, pred.albedo, pred.sh, R, t)):
                if self._n_identity == 0:
                    self._identity = pred.identity[0].astype(np.float64)
                self._track = FaceTrack(rotation=R[0].astype(np.float64), translation=t[0].astype(np.float64),
                                        expression=pred.expression[0].astype(np.float64),
                                        identity=self._identity.copy(), landmark_error_px=float("nan"),
                                        iterations=0)
                with self._lock:
                    if self._n_appearance == 0:
                        self._albedo, self._sh = pred.albedo[0].astype(np.float32), pred.sh[0].astype(np.float32)
        return super().track(image_bgr, detection)
