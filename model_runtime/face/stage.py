"""The capture's face stage: a landmark tracker on every frame, an appearance fit on keyframes.

:class:`FaceStage` is what the capture pipeline (:mod:`model_runtime.capture`) calls;
:class:`FaceFitStage` implements it with :class:`.tracker.FaceTracker` and :class:`.fit.FaceFitter`.
"""
from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from ..detectors.base import Detection
from .albedo_detail import MAX_SAMPLES, SAMPLE_EVERY, AlbedoDetail, hair_zone
from .eye_colour import FACE_FORWARD, EyeColourEstimate
from .gaze import GazeEstimator, angles_to_keys
from .landmarks import FACE_OVAL


class FaceStage(Protocol):
    """The capture's face: :meth:`track` inline on every frame, :meth:`fit_appearance` on keyframes
    in a background thread."""

    expression_names: tuple[str, ...]

    def reset(self, K: np.ndarray) -> None:
        """Start a new clip seen by a camera with intrinsics ``K (3, 3)``."""

    def track(self, image_bgr: np.ndarray, detection: Detection) -> tuple[np.ndarray, Any] | None:
        """Inline, every frame (``image_bgr (H, W, 3)`` uint8, its detection): -> ``(expression (E,),
        seed)`` (``seed`` for :meth:`fit_appearance`), or None when the frame has no usable face."""

    def new_track(self) -> None:
        """The next frame shows another person, or follows a cut: nothing carries over from this frame's face
        track (the clip's identity and appearance stay)."""

    def fit_appearance(self, image_bgr: np.ndarray, detection: Detection, seed: Any) -> np.ndarray | None:
        """Background, keyframes: fit the clip's albedo and the lighting to this frame (tracked as
        ``seed``); -> the lighting ``sh (27,)``, or None when the fit failed."""

    def current_sh(self) -> np.ndarray:
        """-> the latest lighting ``(27,)`` (white ambient before the first keyframe fit)."""

    def clip_params(self) -> tuple[np.ndarray, np.ndarray]:
        """-> current per-clip ``(identity (Ki,), albedo (Ka,))``."""

    def iris_colour(self) -> np.ndarray:
        """-> the clip's iris colour ``(3,)`` linear RGB (:mod:`.eye_colour`), zeros while unknown."""

    def albedo_detail(self) -> np.ndarray:
        """-> the clip's per-vertex colour detail ``(N, 3)`` linear RGB over the 3DMM albedo
        (:mod:`.albedo_detail`), ``(0, 3)`` when the stage has none."""


class FaceFitStage:
    """The capture's face: :class:`.tracker.FaceTracker` on every frame, :class:`.fit.FaceFitter`
    on keyframes.

    * **Identity** (per clip): estimated by the tracker from the landmarks of the first
      ``fitter.config.identity_frames`` face frames (identity free in the Gauss-Newton solve,
      running mean), then frozen; every expression of the clip is tracked with it.
    * **Expression, head pose** (per frame): the tracker, warm-started from the previous frame; cold
      after a frame without a face or a new track (:meth:`new_track`).
    * **Albedo, lighting**: on keyframes, :meth:`.fit.FaceFitter.fit_appearance` (the
      photometric term solved in closed form: alternating ridge regressions for SH and albedo,
      ~25 ms) for the tracked pose, expression and identity; albedo = running mean over the
      first ``identity_frames`` keyframes, SH = the latest keyframe's, held until the next one.
    * **Iris colour** (:mod:`.eye_colour`): sampled on the same keyframes.
    * **Colour detail** (:mod:`.albedo_detail`): every :data:`~.albedo_detail.SAMPLE_EVERY`-th tracked
      face frame after the identity is frozen, the posed vertices sample the image (in ``track``).

    ``track`` runs in the pipeline's thread (the landmark tracker does not look at the image;
    a network that does can), ``fit_appearance`` in the face worker; they share only the
    appearance (albedo, SH), under a lock.
    """

    def __init__(self, fitter, tracker=None):
        from .render import outward_sign
        from .tracker import FaceTracker

        self.fitter = fitter
        self._out_sign = outward_sign(fitter.model)     # the face model's outward normals (colour detail)
        self.tracker = tracker or FaceTracker(fitter.model, correspondence=fitter.corr,
                                              expression_range=fitter.expression_range)
        self.expression_names: tuple[str, ...] = tuple(fitter.model.exp_names)
        mean = np.asarray(fitter.model.mean_shape, np.float64).reshape(-1, 3)
        self._hair_zone = hair_zone(mean, self.tracker.corr.points(mean[None])[0])   # colour detail
        self._lock = threading.Lock()
        self.reset(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]))

    def reset(self, K: np.ndarray) -> None:
        """New clip: forget the face; use the capture's focal length so every fit shares one camera."""
        from .fit import ambient_sh

        sizes = self.fitter.sizes
        self.K = np.asarray(K, np.float64)
        self.fitter.focal_px = float(self.K[0, 0])
        self._clip = getattr(self, "_clip", 0) + 1       # a late keyframe of an earlier clip is ignored
        self._track = None
        self._gaze = GazeEstimator()                    # eyeLook* keys from the iris (face/gaze.py)
        self._identity = np.zeros(sizes["identity"], np.float64)
        self._n_identity = 0
        self._iris = EyeColourEstimate(self.fitter.config.identity_frames)
        self._detail = AlbedoDetail(self.fitter.model.num_vertices, self._hair_zone)
        self._face_frames = 0           # tracked face frames since the identity was frozen
        self._detail_cache = None       # (key, detail) of the last albedo_detail()
        with self._lock:
            self._albedo = np.zeros(sizes["albedo"], np.float32)
            self._sh = ambient_sh()
            self._n_appearance = 0

    def track(self, image_bgr: np.ndarray, detection: Detection) -> tuple[np.ndarray, Any] | None:
        lm = detection.face_landmarks
        if lm is None or lm.shape[0] != self.tracker.corr.weights.shape[0] or not np.isfinite(lm).all():
            self._track = None                          # lost: the next face starts afresh
            return None
        box = detection.face_box
        size = float(np.sqrt(box[2] * box[3])) if box is not None and np.all(np.isfinite(box)) \
            and min(box[2], box[3]) > 1 else None
        learn = self._n_identity < self.fitter.config.identity_frames
        held = angles_to_keys(self._gaze.update(lm, detection.extras.get("iris_landmarks_px")), self.expression_names)
        tr = self.tracker.track(lm, self.K, self._identity, self._track, face_size=size, fit_identity=learn,
                                held_values=held)
        if learn:
            n = self._n_identity
            self._identity = (self._identity * n + tr.identity) / (n + 1)
            self._n_identity = n + 1
        else:
            if self._face_frames % SAMPLE_EVERY == 0 and self._detail.samples < MAX_SAMPLES and image_bgr is not None:
                self._sample_detail(image_bgr, tr, lm)
            self._face_frames += 1
        self._track = tr
        return tr.expression, (tr, self._identity.astype(np.float32), self._clip)

    def new_track(self) -> None:
        """Another person, or a cut (:attr:`~model_runtime.capture.records.FrameRecord.track_break`): the next
        face starts cold, not from this one's pose and expression."""
        self._track = None

    def fit_appearance(self, image_bgr: np.ndarray, detection: Detection, seed: Any) -> np.ndarray | None:
        from .fit import FaceFitState

        tr, identity, clip = seed
        with self._lock:
            albedo, sh, n = self._albedo, self._sh, self._n_appearance
        state = FaceFitState(identity=identity, albedo=albedo, n_identity=n, rotation=tr.rotation,
                             translation=tr.translation, expression=tr.expression, sh=sh)
        res = self.fitter.fit_appearance(image_bgr, detection.face_landmarks, detection.face_box, state)
        if not res.ok:
            return None
        with self._lock:
            if clip != self._clip:
                return None
            self._albedo, self._sh, self._n_appearance = res.albedo, res.sh, res.state.n_identity
            iris = self._iris
        iris.add(image_bgr, detection.face_landmarks, (detection.extras or {}).get("iris_landmarks_px"), res.sh,
                 np.asarray(tr.rotation, np.float64) @ FACE_FORWARD)
        return res.sh

    def current_sh(self) -> np.ndarray:
        with self._lock:
            return self._sh.copy()

    def clip_params(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self._identity.astype(np.float32), self._albedo.copy()

    def iris_colour(self) -> np.ndarray:
        return self._iris.value()

    def albedo_detail(self) -> np.ndarray:
        from ..models.face_model import face_albedo

        m = self.fitter.model
        with self._lock:
            albedo, sh = self._albedo.copy(), self._sh.copy()
        key = (self._detail.samples, np.asarray(albedo).tobytes(), np.asarray(sh).tobytes())
        if self._detail_cache is not None and self._detail_cache[0] == key:
            return self._detail_cache[1]     # asked at every chunk written: computed when something changed
        base = face_albedo(m.mean_albedo, m.albedo_basis, np.asarray(albedo, np.float32)[None])[0]
        out = self._detail.detail(np.clip(base, 0.0, 1.0), sh)
        self._detail_cache = (key, out)
        return out

    def _sample_detail(self, image_bgr: np.ndarray, tr, landmarks: np.ndarray) -> None:
        """The face's vertices as tracked (the clip identity, this frame's expression and pose) and the
        image under them -> one :class:`.albedo_detail.AlbedoDetail` sample."""
        from ..models.face_model import face_geometry, vertex_normals

        m = self.fitter.model
        v = face_geometry(m.mean_shape, m.id_basis, m.exp_basis, self._identity[None].astype(np.float32),
                          np.asarray(tr.expression, np.float32)[None])[0].astype(np.float64)
        R, t = np.asarray(tr.rotation, np.float64), np.asarray(tr.translation, np.float64)
        n = self._out_sign * vertex_normals(v[None], np.asarray(m.faces, np.int64))[0]
        self._detail.add(image_bgr, v @ R.T + t, n @ R.T, self.K, np.asarray(landmarks)[list(FACE_OVAL), :2])
