"""The capture pipeline: frames -> detector -> IK -> face -> translation -> filters -> capture file.

Four threads overlap the work, joined by bounded queues (so memory stays
flat whatever the clip length)::

    [decode thread]  source frames ──q──> [detect thread] detector ──q──> [caller's thread]
                                                                           hand sides, IK, shape,
                                                                           face tracker, Eq. 14,
                                                                           filters, gap filling,
                                                                           writer
                            [face thread, low priority] keyframe face fit <──┘

OpenCV decoding and MediaPipe release the GIL, so on two cores decoding and
detection of frame t+1 run while frame t is fitted.  The face is split in two:
every frame's head pose and expression come from a fast landmark tracker
(:mod:`face_tracker`, ~2-4 ms, inline); the photometric part (:mod:`face_fit`,
closed form, ~25 ms) runs on keyframes at a lower OS priority (adaptive: when the
worker is free and at least :data:`KEYFRAME_GAP_S` after the last one, or every
N-th face frame, ``face_every``) and gives the clip's albedo and the lighting,
so it does not slow the body capture down.  Cancellation (an
:class:`threading.Event`, set by ``serve``'s cancel or by Ctrl-C) is checked
between frames in every stage.  On cancel, a source error or a crash the
frames already fitted are finished (held gap/shape buffers drained) and
:meth:`CaptureWriter.abort` keeps them; the raised error carries
``partial_output`` (path or None) and names it in its message.

Per-clip estimates: beta and alpha are the weighted median over the first
``shape_window`` valid frames (:class:`ShapeEstimator`); in offline mode the
frames before that are held back so every frame's translation uses the same
skeleton.  Live sources (cameras) never wait: they use the running estimate
and hold-filling (interpolation would need future frames).

Camera-frame convention (the one place it is decided): ``pose_6d[t, 0]`` is the
pelvis rotation that maps the body model's rest frame (Y up, facing +Z) into
the camera frame (x right, y down, z forward).  The IK networks receive the
detector's keypoints in camera axes and return exactly this root rotation; the
model posed with ``pose_6d``, scaled by ``scale`` about the model origin and
shifted by ``transl`` lands on the person in the camera frame::

    X_cam = scale * LBS(betas, pose_6d) + transl,    [u v 1]^T ~ camera_K X_cam
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Final, Mapping, Protocol

import numpy as np

from ..core import rotations as R
from ..models.body_model import BodyModel
from ..core.capture_file import CaptureWriter
from ..core.errors import CancelledError, NoPersonError, RuntimeErrorBase
from ..core.lbs import forward_kinematics
from ..core.skeleton import (
    BODY_KEYPOINT_NAMES, HAND21_NAMES, JOINT_NAMES, NUM_BETAS, NUM_BODY_JOINTS, NUM_HAND_JOINTS, NUM_JOINTS,
    PARENTS
)
from ..detectors.base import Detection, Detector
from ..core.options import CaptureOptions, SmoothingConfig
from .filters import GapFiller, OneEuroFilter, RotationFilter
from .sources import Frame, FrameSource
from .tracking import HandSideTracker, ShapeEstimator
from .translation import TranslationSolver, intrinsics_from_fov, load_calibration

log = logging.getLogger(__name__)

#: keypoint rows of ``keypoints_2d``/``keypoints_3d`` in capture files
KEYPOINT_NAMES: Final[tuple[str, ...]] = (
    BODY_KEYPOINT_NAMES
    + tuple(f"left_hand_{n}" for n in HAND21_NAMES)
    + tuple(f"right_hand_{n}" for n in HAND21_NAMES)
)
#: ``face`` is per keyframe fit (``CaptureResult.face_fits``), ``face_track`` per tracked frame
STAGES: Final[tuple[str, ...]] = ("decode", "detect", "ik", "face_track", "face", "filter", "write")
#: adaptive mode: seconds of video between two keyframes (closed-form albedo + lighting, ~25-50 ms
#: of CPU each on the 2-core test machine).  Lighting and albedo change slowly; a keyframe every
#: second cost a few % of the bench ratio at load 5-7 (docs/bench.md), every 5 s is within noise
KEYFRAME_GAP_S: Final[float] = 5.0
#: One Euro for expressions: coefficient speeds are in units/s (not rad/s); a blink or a
#: syllable moves a coefficient by ~0.5 in ~0.1 s, so the cut-off must reach ~5 Hz while it
#: moves and the speed estimate must see the onset within a frame or two (docs/pipeline.md)
EXPRESSION_BETA: Final[float] = 1.0
EXPRESSION_D_CUTOFF: Final[float] = 4.0
#: a frame counts as "person found" when at least MIN_CONFIDENT_KEYPOINTS body keypoints reach
#: MIN_BODY_CONFIDENCE (6 of 24: a talking head shows only its head keypoints, and that is enough)
MIN_BODY_CONFIDENCE: Final[float] = 0.5
MIN_CONFIDENT_KEYPOINTS: Final[int] = 6
#: offline mode holds at most this many times ``shape_window`` frames before freezing the shape
MAX_HELD_FACTOR: Final[int] = 10
_NB = len(BODY_KEYPOINT_NAMES)
_NH = len(HAND21_NAMES)


def _chain_to_root(j: int) -> list[int]:
    out = [j]
    while PARENTS[out[-1]] >= 0:
        out.append(int(PARENTS[out[-1]]))
    return out[::-1]


#: joints from the pelvis down to each elbow, ``(2, 7)`` [left, right]
_ELBOW_CHAINS = np.array([_chain_to_root(JOINT_NAMES.index(f"{side}_elbow")) for side in ("left", "right")])
_WRISTS = np.array([JOINT_NAMES.index("left_wrist"), JOINT_NAMES.index("right_wrist")])
_BODY_WRIST_ROWS = np.array([BODY_KEYPOINT_NAMES.index("left_wrist"), BODY_KEYPOINT_NAMES.index("right_wrist")])


# --------------------------------------------------------------------------- contracts
class IKStage(Protocol):
    """BodyIKNet + HandIKNet (:mod:`model_runtime.ik.inference`).  Inputs in camera axes."""

    def solve_body(self, kp3d, conf) -> Mapping[str, Any]:
        """``kp3d (B, 24, 3)``, ``conf (B, 24)`` -> ``rot6d (B, 22, 6)``, ``betas (B, 16)``, ``scale (B,)``."""

    def solve_hands_full(self, kp3d, conf) -> Mapping[str, Any]:
        """``kp3d (B, 2, 21, 3)``, ``conf (B, 2, 21)`` -> ``rot6d (B, 2, 15, 6)`` fingers and
        ``wrist_global (B, 2, 3, 3)`` (each wrist's rotation in the keypoints' frame)."""


class FaceStage(Protocol):
    """The capture's face (:class:`FaceFitStage`): a tracker on every frame, a fit on keyframes."""

    expression_names: tuple[str, ...]

    def reset(self, K: np.ndarray) -> None:
        """Start a new clip seen by a camera with intrinsics ``K (3, 3)``."""

    def track(self, detection: Detection) -> tuple[np.ndarray, Any] | None:
        """Inline, every frame: -> ``(expression (E,), seed)`` (``seed`` for :meth:`refine`), or
        None when the frame has no usable face."""

    def refine(self, image_bgr: np.ndarray, detection: Detection, seed: Any) -> np.ndarray | None:
        """Background, keyframes: refine the clip's appearance on this frame; -> ``sh (27,)`` or None."""

    def current_sh(self) -> np.ndarray:
        """-> the latest lighting ``(27,)`` (white ambient before the first keyframe fit)."""

    def clip_params(self) -> tuple[np.ndarray, np.ndarray]:
        """-> current per-clip ``(identity (Ki,), albedo (Ka,))``."""


class FaceFitStage:
    """The capture's face: :class:`face_tracker.FaceTracker` on every frame, :class:`face_fit.FaceFitter`
    on keyframes.

    * **Identity** (per clip): estimated by the tracker from the landmarks of the first
      ``fitter.config.identity_frames`` face frames (identity free in the Gauss-Newton solve,
      running mean), then frozen; every expression of the clip is tracked with it.
    * **Expression, head pose** (per frame): the tracker, warm-started from the previous frame.
    * **Albedo, lighting**: on keyframes, :meth:`face_fit.FaceFitter.fit_appearance` (the
      photometric term solved in closed form: alternating ridge regressions for SH and albedo,
      ~25 ms) for the tracked pose, expression and identity; albedo = running mean over the
      first ``identity_frames`` keyframes, SH = the latest keyframe's, held until the next one.

    ``track`` runs in the pipeline's thread, ``refine`` in the face worker; they share only
    the appearance (albedo, SH), under a lock.
    """

    def __init__(self, fitter, tracker=None):
        from ..face.tracker import FaceTracker

        self.fitter = fitter
        self.tracker = tracker or FaceTracker(fitter.model, correspondence=fitter.corr,
                                              expression_range=fitter.expression_range)
        self.expression_names: tuple[str, ...] = tuple(fitter.model.exp_names)
        self._lock = threading.Lock()
        self.reset(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]))

    def reset(self, K: np.ndarray) -> None:
        """New clip: forget the face; use the capture's focal length so every fit shares one camera."""
        from ..face.fit import ambient_sh

        sizes = self.fitter.sizes
        self.K = np.asarray(K, np.float64)
        self.fitter.focal_px = float(self.K[0, 0])
        self._clip = getattr(self, "_clip", 0) + 1       # a late keyframe of an earlier clip is ignored
        self._track = None
        self._identity = np.zeros(sizes["identity"], np.float64)
        self._n_identity = 0
        with self._lock:
            self._albedo = np.zeros(sizes["albedo"], np.float32)
            self._sh = ambient_sh()
            self._n_appearance = 0

    def track(self, detection: Detection) -> tuple[np.ndarray, Any] | None:
        lm = detection.face_landmarks
        if lm is None or lm.shape[0] != self.tracker.corr.weights.shape[0] or not np.isfinite(lm).all():
            self._track = None                          # lost: the next face starts afresh
            return None
        box = detection.face_box
        size = float(np.sqrt(box[2] * box[3])) if box is not None and np.all(np.isfinite(box)) \
            and min(box[2], box[3]) > 1 else None
        learn = self._n_identity < self.fitter.config.identity_frames
        tr = self.tracker.track(lm, self.K, self._identity, self._track, face_size=size, fit_identity=learn)
        if learn:
            n = self._n_identity
            self._identity = (self._identity * n + tr.identity) / (n + 1)
            self._n_identity = n + 1
        self._track = tr
        return tr.expression, (tr, self._identity.astype(np.float32), self._clip)

    def refine(self, image_bgr: np.ndarray, detection: Detection, seed: Any) -> np.ndarray | None:
        from ..face.fit import FaceFitState

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
        return res.sh

    def current_sh(self) -> np.ndarray:
        with self._lock:
            return self._sh.copy()

    def clip_params(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self._identity.astype(np.float32), self._albedo.copy()


# --------------------------------------------------------------------------- options
#: the schema lives in :mod:`model_runtime.core.options` (shared with ``serve`` and the add-on)
__all__ = ["CaptureOptions", "CapturePipeline", "CaptureResult", "build_pipeline"]


# --------------------------------------------------------------------------- results
@dataclass
class StageTimer:
    """Total seconds and counts per stage; each stage is written by one thread only."""

    total: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    count: dict[str, int] = field(default_factory=lambda: {s: 0 for s in STAGES})
    dropped: int = 0      # live frames dropped because the fitting fell behind

    def add(self, stage: str, seconds: float, n: int = 1) -> None:
        self.total[stage] += seconds
        self.count[stage] += n

    def mean_ms(self) -> dict[str, float]:
        return {s: 1000.0 * self.total[s] / max(self.count[s], 1) for s in STAGES}


@dataclass
class CaptureResult:
    """What a finished (or cancelled) capture produced."""

    output: Path | None
    frames: int
    valid_frames: int
    cancelled: bool
    wall_s: float
    stage_ms: dict[str, float]
    hand_swaps: int = 0
    dropped_frames: int = 0
    face_fits: int = 0       # keyframe face fits (every face frame is tracked); stage_ms["face"] is per fit

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


FrameCallback = Callable[[dict], None]
ProgressCallback = Callable[[int, int | None, float], None]


# --------------------------------------------------------------------------- worker threads
class _End:
    """Queue sentinel: the stream ended (``error`` is the exception that ended it, if any)."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def _put(q: queue.Queue, item, cancel: threading.Event) -> bool:
    while not cancel.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _decode_worker(source: FrameSource, out: queue.Queue, cancel: threading.Event, timer: StageTimer,
                   drop_when_full: bool = False) -> None:
    """Read frames into ``out``.  ``drop_when_full`` (cameras): when the fitting falls behind, the
    oldest waiting frame is dropped instead of letting latency grow."""
    it = iter(source)
    try:
        while not cancel.is_set():
            t0 = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                break
            timer.add("decode", time.perf_counter() - t0)
            item = (frame, time.perf_counter())
            if drop_when_full:
                try:
                    out.put_nowait(item)
                    continue
                except queue.Full:
                    try:
                        out.get_nowait()
                        timer.dropped += 1
                    except queue.Empty:
                        pass
            if not _put(out, item, cancel):
                return
        _put(out, _End(), cancel)
    except BaseException as e:  # forwarded, raised in the caller's thread after earlier frames
        _put(out, _End(e), cancel)


def _detect_worker(detector: Detector, inp: queue.Queue, out: queue.Queue, cancel: threading.Event,
                   timer: StageTimer) -> None:
    last_ts = -1
    try:
        while not cancel.is_set():
            try:
                item = inp.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                _put(out, item, cancel)
                return
            frame, t_read = item
            ts = max(int(round(frame.time * 1000.0)), last_ts + 1)  # strictly increasing for tracking
            last_ts = ts
            t0 = time.perf_counter()
            det = detector.detect(frame.image, timestamp_ms=ts)
            timer.add("detect", time.perf_counter() - t0)
            if not _put(out, (frame, det, t_read), cancel):
                return
    except BaseException as e:
        _put(out, _End(e), cancel)


# --------------------------------------------------------------------------- the pipeline
class CapturePipeline:
    """Runs captures with loaded components (reusable across captures of one session).

    Args:
        detector: a :class:`Detector`.
        ik: an :class:`IKStage` (:class:`model_runtime.ik.inference.IKSolver`).
        body: the body model (rest joints for Eq. 14, joint names).
        face: a :class:`FaceStage`, or None (no face: expressions/SH stay zero).
        options: :class:`CaptureOptions`.
    """

    def __init__(self, detector: Detector, ik: IKStage, body: BodyModel, face: FaceStage | None,
                 options: CaptureOptions = CaptureOptions()):
        self.detector, self.ik, self.body, self.face, self.options = detector, ik, body, face, options
        # rest joints are linear in beta: J(beta) = J_template + J_dirs . beta (precomputed once)
        jr = np.asarray(body.J_regressor, np.float64)
        self._j_template = jr @ np.asarray(body.v_template, np.float64)                       # (52, 3)
        self._j_dirs = np.einsum("jv,vck->jck", jr, np.asarray(body.shapedirs[..., :NUM_BETAS], np.float64))

    def rest_joints(self, betas: np.ndarray) -> np.ndarray:
        """Rest joints ``(52, 3)`` of the body model for ``betas (16,)``."""
        return self._j_template + self._j_dirs @ np.asarray(betas, np.float64)

    # ---- public
    def run(self, source: FrameSource, output: Path | str | None, cancel: threading.Event | None = None,
            on_progress: ProgressCallback | None = None, on_frame: FrameCallback | None = None,
            static_extra: Mapping[str, Any] | None = None, live: bool | None = None) -> CaptureResult:
        """Capture ``source`` into ``output`` (``.npz``; None = do not write).

        ``on_progress(frames_done, total_or_None, fps)`` and ``on_frame(record)`` are
        called from this thread after every written frame.  Returns a
        :class:`CaptureResult`; raises :class:`CancelledError` when ``cancel`` is set,
        the source's error (e.g. :class:`SourceLostError`), or :class:`NoPersonError`
        when no frame had a person -- each with ``partial_output`` set.  ``live``
        (default: ``source.is_live``) emits every frame at once (running shape
        estimate, hold-filling) instead of holding frames back for the clip's shape.
        """
        cancel = cancel or threading.Event()
        opts = self.options
        K = (load_calibration(opts.calibration, source.image_size) if opts.calibration
             else intrinsics_from_fov(source.image_size, opts.fov))
        if self.face is not None:
            self.face.reset(K)
        reset = getattr(self.detector, "reset", None)   # optional in the Detector protocol: forget tracking
        if callable(reset):
            reset()
        timer = StageTimer()
        worker_cancel = threading.Event()
        state = _ClipState(self, source, K, live=source.is_live if live is None else live,
                           worker_cancel=worker_cancel, timer=timer)
        writer = None
        if output is not None:
            try:
                writer = CaptureWriter(output, static=state.static_values(static_extra),
                                       chunk_frames=opts.chunk_frames)
            except BaseException:
                state.close()
                raise
        q_frames: queue.Queue = queue.Queue(maxsize=opts.queue_size)
        q_dets: queue.Queue = queue.Queue(maxsize=opts.queue_size)
        threads = [
            threading.Thread(target=_decode_worker, args=(source, q_frames, worker_cancel, timer, source.is_live),
                             name="capture-decode", daemon=True),
            threading.Thread(target=_detect_worker, args=(self.detector, q_frames, q_dets, worker_cancel, timer),
                             name="capture-detect", daemon=True),
        ]
        t_start = time.perf_counter()
        emitted = 0
        batch_size = 1 if state.live else opts.ik_batch

        def emit(records: list[dict]) -> None:
            nonlocal emitted
            for rec in records:
                t0 = time.perf_counter()
                if writer is not None:
                    writer.append(**state.file_frame(rec))
                timer.add("write", time.perf_counter() - t0)
                emitted += 1
                if on_frame is not None:
                    on_frame(rec)
                if on_progress is not None:
                    el = time.perf_counter() - t_start
                    on_progress(emitted, source.num_frames, emitted / el if el > 0 else 0.0)

        error: BaseException | None = None
        for t in threads:
            t.start()
        try:
            while True:
                if cancel.is_set():
                    raise CancelledError(f"{source.description}: capture cancelled after {emitted} frames")
                try:
                    item = q_dets.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(item, _End):
                    if item.error is not None:
                        raise item.error
                    break
                batch = [item]
                end = None
                while len(batch) < batch_size:      # offline: wait for a few frames, one IK call for all
                    try:
                        nxt = q_dets.get(timeout=0.05)
                    except queue.Empty:
                        if cancel.is_set():
                            break
                        continue
                    if isinstance(nxt, _End):
                        end = nxt
                        break
                    batch.append(nxt)
                emit(state.process(batch, timer))
                if writer is not None:
                    state.update_static(writer)
                if end is not None:
                    if end.error is not None:
                        raise end.error
                    break
            emit(state.finish(timer))
        except BaseException as e:  # noqa: BLE001 - re-raised below with the partial output named
            error = e
        finally:
            worker_cancel.set()
            for t in threads:
                t.join(timeout=5.0)
        wall = time.perf_counter() - t_start

        partial: Path | None = None
        if error is not None:
            try:
                emit(state.finish(timer))   # finish what was fitted: held gap/shape buffers
            except Exception:  # noqa: BLE001 - keep the first error
                log.exception("could not finish the held frames")
        state.close()
        if error is not None:
            if writer is not None:
                state.update_static(writer)
                partial = writer.abort()
            _attach_partial(error, partial, emitted)
            if isinstance(error, KeyboardInterrupt):
                raise CancelledError(
                    f"{source.description}: interrupted after {emitted} frames"
                    + (f"; the finished frames are kept in {partial}" if partial else "")
                ) from error
            raise error
        out_path = None
        if writer is not None:
            state.update_static(writer)
            # no person anywhere: keep the frames like a failed run (never replacing a capture)
            out_path = writer.close() if state.valid_frames else writer.abort()
        if state.valid_frames == 0:
            err = NoPersonError(f"{source.description}: no person found in any of the {emitted} frames "
                                f"({source.start}..{source.start + emitted - 1})")
            _attach_partial(err, out_path, emitted)
            raise err
        return CaptureResult(output=out_path, frames=emitted, valid_frames=state.valid_frames, cancelled=False,
                             wall_s=wall, stage_ms=timer.mean_ms(), hand_swaps=state.hands.swaps,
                             dropped_frames=timer.dropped, face_fits=timer.count["face"])


def _attach_partial(error: BaseException, partial: Path | None, frames: int) -> None:
    """Name the kept partial capture in ``error``'s message and set ``error.partial_output``."""
    try:
        error.partial_output = partial  # type: ignore[attr-defined]
    except AttributeError:
        return
    if isinstance(error, RuntimeErrorBase) and error.args and isinstance(error.args[0], str):
        note = (f"; the {frames} finished frames are kept in {partial}" if partial
                else "; no finished frame to keep")
        error.args = (error.args[0] + note,) + error.args[1:]


# --------------------------------------------------------------------------- face worker
FACE_THREAD_NICE: Final[int] = 10


def _lower_thread_priority() -> None:
    """Lower the calling thread's priority to a nice value of :data:`FACE_THREAD_NICE` (Linux
    threads have their own nice value; elsewhere leave it as is).

    Not ``SCHED_IDLE``: on a machine with other (niced) work an idle-class thread is starved,
    and a clip's first keyframe, which the offline capture needs for its albedo and lighting,
    took 3-9 s instead of ~0.5 s (bench, tennis.mp4 and s20.mp4).  At nice 10 the worker still
    yields ~90 % of a shared core to the capture's own threads."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FACE_THREAD_NICE)
    except (AttributeError, OSError):
        pass


class _FaceWorker:
    """Runs keyframe face fits (:meth:`FaceStage.refine`) in a background thread of lower OS
    priority, one job at a time.

    A keyframe fit costs several detector frames on a CPU, so in adaptive mode
    (:meth:`try_submit`) a keyframe is taken only if the worker is idle: decoding,
    detection, IK and the per-frame face tracker keep their speed and the fit uses the CPU
    time left over (nice 10; on a machine busy with other work it may get
    little, then the lighting is held longer).  ``submit`` blocks instead (``face_every=N``:
    deterministic, slower).
    """

    def __init__(self, stage: "FaceStage", cancel: threading.Event, timer: StageTimer, low_priority: bool = True):
        self.stage, self.cancel, self.timer = stage, cancel, timer
        self.low_priority = low_priority      # False when the capture waits for every fit (face_every > 0)
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._done: dict[int, np.ndarray | None] = {}
        self._cond = threading.Condition()
        self._busy = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="capture-face", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self.low_priority:
            _lower_thread_priority()
        while not self.cancel.is_set():
            try:
                key, image, det, seed = self._jobs.get(timeout=0.05)
            except queue.Empty:
                continue
            t0 = time.perf_counter()
            try:
                res = self.stage.refine(image, det, seed)
            except BaseException as e:  # noqa: BLE001 - re-raised in the pipeline's thread
                res, self.error = None, e
            self.timer.add("face", time.perf_counter() - t0)
            with self._cond:
                self._done[key] = res
                self._busy = False
                self._cond.notify_all()

    def try_submit(self, key: int, image: np.ndarray, det: Detection, seed: Any) -> bool:
        with self._cond:
            if self._busy:
                return False
            self._busy = True
        self._jobs.put((key, image, det, seed))
        return True

    def submit(self, key: int, image: np.ndarray, det: Detection, seed: Any) -> None:
        with self._cond:
            while self._busy and not self.cancel.is_set():
                self._cond.wait(0.05)
            self._busy = True
        self._jobs.put((key, image, det, seed))

    def ready(self, key: int) -> bool:
        with self._cond:
            return key in self._done

    def result(self, key: int) -> np.ndarray | None:
        """Wait for job ``key`` and return (and forget) its result."""
        with self._cond:
            while key not in self._done:
                if self.cancel.is_set() or not self._thread.is_alive():
                    return None
                self._cond.wait(0.05)
            if self.error is not None:
                raise self.error
            return self._done.pop(key)

    def close(self) -> None:
        self.cancel.set()
        self._thread.join(timeout=10.0)


# --------------------------------------------------------------------------- per-clip state
class _ClipState:
    """Everything carried from frame to frame within one capture (runs in the caller's thread)."""

    def __init__(self, pipe: CapturePipeline, source: FrameSource, K: np.ndarray, live: bool,
                 worker_cancel: threading.Event, timer: StageTimer):
        o = pipe.options
        self.pipe, self.source, self.K, self.live = pipe, source, K, live
        self.hands = HandSideTracker()
        self.shape = ShapeEstimator(window=o.shape_window)
        self.translation = TranslationSolver(K)
        self.rot_filter = RotationFilter(o.smoothing)
        self.transl_filter = OneEuroFilter(o.smoothing, group_last_axis=True)
        self.expr_filter = OneEuroFilter(expression_smoothing(o.smoothing))
        # body gaps (no person) and face gaps (frames without a tracked face)
        self.filler = GapFiller(o.fill, quat_keys=("quat",), linear_keys=("transl",), max_gap=o.max_gap,
                                lookahead=not live)
        self.face_filler = GapFiller("interpolate", linear_keys=("expression", "sh"), max_gap=o.max_gap,
                                     flag="face_ok", lookahead=not live)
        self.face_worker = (_FaceWorker(pipe.face, worker_cancel, timer, low_priority=o.face_every == 0)
                            if pipe.face is not None and o.face else None)
        self.E = len(pipe.face.expression_names) if pipe.face is not None else 0
        self._pending: deque[dict] = deque()   # fitted frames waiting for the clip's shape / their face fit
        self._face_count = 0
        self._last_keyframe_t = -np.inf        # time (s) of the last keyframe submitted (adaptive mode)
        self._sh: np.ndarray | None = None     # lighting of the last keyframe released (file order)
        self._live_jobs: list[int] = []        # keyframe jobs nobody waits for (live; adaptive after the first)
        self._last_hand_rot = np.tile(np.eye(3), (2, NUM_HAND_JOINTS, 1, 1))
        self._last_transl: np.ndarray | None = None
        self._static_written: dict[str, np.ndarray] | None = None
        self.valid_frames = 0

    # ---- static values
    def static_values(self, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        face = self.pipe.face
        ident, alb = face.clip_params() if face is not None else (np.zeros(0, np.float32), np.zeros(0, np.float32))
        vals = dict(
            fps=np.float32(self.source.fps), image_size=np.asarray(self.source.image_size, np.int32),
            camera_K=self.K.astype(np.float32), joint_names=np.asarray(JOINT_NAMES),
            betas=self.shape.betas.astype(np.float32), scale=np.float32(self.shape.scale),
            keypoint_names=np.asarray(KEYPOINT_NAMES),
            face_identity=np.asarray(ident, np.float32), face_albedo=np.asarray(alb, np.float32),
            expression_names=np.asarray(face.expression_names if face is not None else (), dtype=str),
            body_model=np.asarray(self.pipe.options.body_model), face_model=np.asarray(self.pipe.options.face_model),
        )
        vals.update(extra or {})
        return vals

    def update_static(self, writer: CaptureWriter) -> None:
        """Write the per-clip values (shape, scale, face identity/albedo) as soon as they change, so a
        killed capture keeps them (:class:`CaptureWriter` writes ``static.npz`` atomically)."""
        vals = dict(betas=self.shape.betas.astype(np.float32), scale=np.float32(self.shape.scale))
        if self.pipe.face is not None:
            ident, alb = self.pipe.face.clip_params()
            vals.update(face_identity=np.asarray(ident, np.float32), face_albedo=np.asarray(alb, np.float32))
        if not all(np.isfinite(v).all() for v in vals.values()) or not vals["scale"] > 0:
            log.warning("per-clip values are not finite yet; the file keeps the last finite ones")
            return
        if self._static_written is not None and all(
                np.array_equal(v, self._static_written.get(k)) for k, v in vals.items()):
            return
        writer.update_static(**vals)
        self._static_written = vals

    # ---- stage 1: fitting (IK, face) per frame
    def process(self, items: list[tuple[Frame, Detection, float]], timer: StageTimer) -> list[dict]:
        """Fit detected frames ``[(frame, detection, t_read), ...]`` (in order; the IK nets run once
        for all of them); returns the records ready to write (possibly none, or several)."""
        recs: list[dict] = []
        for frame, det, t_read in items:
            body_2d, body_3d = _finite_points(det.body_2d, det.body_3d, frame.index, "body")
            hands_2d, hands_3d = _finite_points(det.hands_2d, det.hands_3d, frame.index, "hand")
            hands_conf = np.where(np.isfinite(det.hands_conf), det.hands_conf, 0.0)
            h2, h3, hc, _ = self.hands(body_2d, hands_2d, hands_3d, hands_conf)
            confident = int((body_2d[:, 2] >= MIN_BODY_CONFIDENCE).sum())
            valid = bool(det.person) and confident >= MIN_CONFIDENT_KEYPOINTS
            recs.append(dict(index=frame.index, time=frame.time, valid=valid, t_read=t_read,
                             body_2d=body_2d, body_3d=body_3d, hands_2d=h2, hands_3d=h3,
                             hands_conf=hc, expression=np.zeros(self.E), sh=np.zeros(27), face_ok=False,
                             face_job=False, rot=np.tile(np.eye(3), (NUM_JOINTS, 1, 1))))
        t0 = time.perf_counter()
        self._solve(recs)
        timer.add("ik", time.perf_counter() - t0, n=len(recs))
        for rec, (frame, det, _) in zip(recs, items):
            if rec["valid"] and self.face_worker is not None:
                self._face(rec, frame, det, timer)
            self._pending.append(rec)
        if len(self._pending) > MAX_HELD_FACTOR * self.shape.window:
            self.shape.freeze()      # a long start without a person: do not wait forever
        if not (self.live or self.shape.frozen):
            return []
        return self._release(timer, final=False)

    def _face(self, rec: dict, frame: Frame, det: Detection, timer: StageTimer) -> None:
        """Track the face of one frame (expression into ``rec``) and maybe make it a keyframe."""
        t0 = time.perf_counter()
        tracked = self.pipe.face.track(det)
        timer.add("face_track", time.perf_counter() - t0)
        if tracked is None:
            return
        rec["expression"], seed = np.asarray(tracked[0], np.float64), tracked[1]
        if not np.isfinite(rec["expression"]).all():
            log.warning("frame %d: the face tracker gave a non-finite expression; the face gap is filled",
                        rec["index"])
            rec["expression"] = np.zeros(self.E)
            return
        rec["face_ok"] = True
        every = self.pipe.options.face_every
        if every == 0:
            if frame.time - self._last_keyframe_t >= KEYFRAME_GAP_S:
                rec["face_job"] = self.face_worker.try_submit(frame.index, frame.image, det, seed)
                if rec["face_job"]:
                    self._last_keyframe_t = frame.time
        elif self._face_count % every == 0:
            self.face_worker.submit(frame.index, frame.image, det, seed)
            rec["face_job"] = True
        self._face_count += 1

    def _solve(self, recs: list[dict]) -> None:
        """BodyIKNet and HandIKNet for the valid records, one batch each; fills ``rec["rot"]``."""
        valid = [r for r in recs if r["valid"]]
        if not valid:
            return
        ik = self.pipe.ik
        body = ik.solve_body(np.stack([r["body_3d"] for r in valid]), np.stack([r["body_2d"][:, 2] for r in valid]))
        rot_body = R.rot6d_to_matrix(_np(body["rot6d"]).astype(np.float64))           # (B, 22, 3, 3)
        betas, scale = _np(body["betas"]), _np(body["scale"]).reshape(-1)
        for i, r in enumerate(valid):
            if not (np.isfinite(rot_body[i]).all() and np.isfinite(betas[i]).all() and np.isfinite(scale[i])):
                log.warning("frame %d: the body IK gave non-finite values; marked invalid and filled", r["index"])
                r["valid"] = False
                continue
            r["rot"][:NUM_BODY_JOINTS] = rot_body[i]
            self.shape.add(betas[i], float(scale[i]), weight=float(r["body_2d"][:, 2].mean()))
        valid = [r for r in valid if r["valid"]]
        with_hands = [r for r in valid if (r["hands_conf"] > 0).any()] if self.pipe.options.hands else []
        if with_hands:
            self._solve_hands(with_hands)
        for r in valid:
            if r.get("hand_rot") is not None:
                seen = (r["hands_conf"] > 0) & np.isfinite(r["hand_rot"]).all(axis=(1, 2, 3))
                self._last_hand_rot = np.where(seen[:, None, None, None], r.pop("hand_rot"), self._last_hand_rot)
            r["rot"][NUM_BODY_JOINTS:] = self._last_hand_rot.reshape(2 * NUM_HAND_JOINTS, 3, 3)
        self.valid_frames += len(valid)

    def _release(self, timer: StageTimer, final: bool) -> list[dict]:
        """Post-process the leading pending records whose face fit is done (all if ``final``)."""
        ready: list[dict] = []
        while self._pending:
            rec = self._pending[0]
            if self.live and not final:
                # never wait: a face fit that finished since the last frame goes to this frame
                if rec["face_job"]:
                    self._live_jobs.append(rec["index"])
                for key in [k for k in self._live_jobs if self.face_worker.ready(k)]:
                    self._keyframe_done(self.face_worker.result(key))
                    self._live_jobs.remove(key)
            elif rec["face_job"]:
                waits = self._sh is None or self.pipe.options.face_every > 0
                if waits or self.face_worker.ready(rec["index"]):
                    if not final and not self.face_worker.ready(rec["index"]):
                        break
                    self._keyframe_done(self.face_worker.result(rec["index"]))
                elif not final:
                    self._live_jobs.append(rec["index"])   # adaptive: later keyframes never hold frames
            if not self.live and self._live_jobs:
                for key in [k for k in self._live_jobs if self.face_worker.ready(k)]:
                    self._keyframe_done(self.face_worker.result(key))
                    self._live_jobs.remove(key)
            if rec["face_ok"]:
                rec["sh"] = self._sh if self._sh is not None else self.pipe.face.current_sh().astype(np.float64)
            ready.append(self._pending.popleft())
        t0 = time.perf_counter()
        out = self._post(ready)
        timer.add("filter", time.perf_counter() - t0, n=len(ready))
        return out

    def _solve_hands(self, recs: list[dict]) -> None:
        """HandIKNet for records with a detected hand: finger rotations (``rec["hand_rot"]``
        ``(2, 15, 3, 3)``) and the wrists' rotation from the hand's own orientation, relative to the
        body's elbow, instead of the body net's guess (``rec["rot"]`` updated in place)."""
        full = self.pipe.ik.solve_hands_full(np.stack([r["hands_3d"] for r in recs]),
                                             np.stack([r["hands_2d"][..., 2] for r in recs]))
        fingers = R.rot6d_to_matrix(_np(full["rot6d"]).astype(np.float64))             # (B, 2, 15, 3, 3)
        wrist_global = _np(full["wrist_global"]).astype(np.float64)                    # (B, 2, 3, 3)
        rot = np.stack([r["rot"] for r in recs])                                       # (B, 52, 3, 3)
        # global rotations of the elbows (the wrists' parents): product down both arm chains at once
        chain = rot[:, _ELBOW_CHAINS]                                                  # (B, 2, 7, 3, 3)
        elbow = chain[:, :, 0]
        for k in range(1, chain.shape[2]):
            elbow = elbow @ chain[:, :, k]
        rel = np.swapaxes(elbow, -1, -2) @ wrist_global                                # (B, 2, 3, 3)
        for i, r in enumerate(recs):
            seen = r["hands_conf"] > 0
            seen = seen & np.isfinite(rel[i]).all(axis=(1, 2))
            r["rot"][_WRISTS] = np.where(seen[:, None, None], rel[i], r["rot"][_WRISTS])
            r["hand_rot"] = fingers[i]

    def finish(self, timer: StageTimer) -> list[dict]:
        """End of stream (or abort): freeze the shape, wait for the face fits, release everything."""
        self.shape.freeze()
        out = self._release(timer, final=True)
        t0 = time.perf_counter()
        for rec in self.face_filler.flush():
            out += self.filler.push(rec)
        out += self.filler.flush()
        timer.add("filter", time.perf_counter() - t0, n=0)
        return out

    def close(self) -> None:
        if self.face_worker is not None:
            self.face_worker.close()

    # ---- stage 2: translation, filters, gap filling
    def _keyframe_done(self, sh: np.ndarray | None) -> None:
        """A keyframe fit finished (``sh (27,)``, None if it failed): frames from here on get its lighting."""
        if sh is not None:
            self._sh = np.asarray(sh, np.float64)

    def _rest_joints(self) -> np.ndarray:
        return self.pipe.rest_joints(self.shape.betas)

    def _post(self, recs: list[dict]) -> list[dict]:
        if not recs:
            return []
        out: list[dict] = []
        valid = [r for r in recs if r["valid"]]
        if valid:
            rots = np.stack([r["rot"] for r in valid])                                   # (B, 52, 3, 3)
            j_rest = np.broadcast_to(self._rest_joints(), (len(valid), NUM_JOINTS, 3))
            joints, _ = forward_kinematics(rots, np.ascontiguousarray(j_rest), self.pipe.body.parents)
            joints = joints * self.shape.scale                                           # (B, 52, 3)
            for r, j in zip(valid, joints):
                r["joints"] = j
                prior = None if self._last_transl is None else np.array([self._last_transl[2]])
                t, ok = self.translation.solve(r["body_2d"][None], j[None], prior)
                r["transl_ok"] = bool(ok[0]) and bool(np.isfinite(t[0]).all())
                if r["transl_ok"]:
                    self._last_transl = t[0]
                r["transl"] = self._last_transl if self._last_transl is not None else np.array([0.0, 0.0, 3.0])
        betas, scale = self.shape.betas, self.shape.scale
        for r in recs:
            r["betas"], r["scale"] = betas, scale
            if r["valid"]:
                r["quat"] = self.rot_filter.quaternions(r["rot"], r["time"])
                r["transl"] = self.transl_filter(r["transl"], r["time"])
            else:
                r["quat"] = R.matrix_to_quat_wxyz(r["rot"])
                r["transl"] = np.zeros(3) if self._last_transl is None else self._last_transl.copy()
                r["joints"] = None
            if r["face_ok"] and self.E:
                r["expression"] = self.expr_filter(r["expression"], r["time"])
            if self.face_worker is None:
                out += self.filler.push(r)
                continue
            for f in self.face_filler.push(r):          # face gaps first (frames between fits) ...
                out += self.filler.push(f)              # ... then body gaps
        return out

    # ---- output
    def file_frame(self, rec: dict) -> dict[str, np.ndarray]:
        """One record -> the per-frame keys of the capture file."""
        rot = R.quat_wxyz_to_matrix(rec["quat"])
        kp2d = np.concatenate([rec["body_2d"], rec["hands_2d"].reshape(2 * _NH, 3)], 0)
        row = dict(pose_6d=R.matrix_to_rot6d(rot), transl=rec["transl"], valid=rec["valid"],
                   keypoints_2d=kp2d, keypoints_3d=self._keypoints_3d(rec),
                   face_expression=rec["expression"], face_sh=rec["sh"])
        bad = [k for k, v in row.items() if not np.isfinite(np.asarray(v, np.float64)).all()]
        if bad:   # last line of defence: a capture file never holds NaN/inf
            log.warning("frame %d: non-finite %s; written as an invalid frame", rec["index"], ", ".join(bad))
            row = {k: np.nan_to_num(np.asarray(v, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
                   for k, v in row.items()}
            if "pose_6d" in bad:
                row["pose_6d"] = R.matrix_to_rot6d(np.tile(np.eye(3), (NUM_JOINTS, 1, 1)))
            row["valid"] = False
        return row

    def _keypoints_3d(self, rec: dict) -> np.ndarray:
        """Detected 3D keypoints placed in the camera frame, ``(66, 3)`` metres.

        Body rows: the detector's pelvis-relative points plus the fitted model's
        pelvis (``scale * FK + transl``); hand rows: the detector's wrist-relative
        points plus the body row of the same wrist.  Rows with confidence 0 are 0.
        """
        out = np.zeros((len(KEYPOINT_NAMES), 3))
        joints = rec.get("joints")
        if not rec["valid"] or joints is None:
            return out
        pelvis = joints[0] + rec["transl"]
        body = rec["body_3d"] + pelvis
        body = np.where(rec["body_2d"][:, 2:3] > 0, body, 0.0)
        hands = rec["hands_3d"] + body[_BODY_WRIST_ROWS][:, None, :]
        hands = np.where(rec["hands_2d"][..., 2:3] > 0, hands, 0.0)
        out[:_NB] = body
        out[_NB:] = hands.reshape(2 * _NH, 3)
        return out


def _finite_points(p2d: np.ndarray, p3d: np.ndarray, index: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Detector points ``(..., N, 3)`` 2D (x, y, conf) and 3D: rows with a NaN/inf become unseen
    (zeros, confidence 0), so nothing non-finite reaches the fit."""
    ok = np.isfinite(p2d).all(-1) & np.isfinite(p3d).all(-1)
    if ok.all():
        return p2d, p3d
    log.warning("frame %d: %d %s keypoint(s) with non-finite values treated as unseen", index, int((~ok).sum()), what)
    return np.where(ok[..., None], p2d, 0.0), np.where(ok[..., None], p3d, 0.0)


def expression_smoothing(config: SmoothingConfig) -> SmoothingConfig:
    """The One Euro parameters of the expression coefficients from the capture's: the same
    ``min_cutoff`` (jitter of a still face) and on/off switch, :data:`EXPRESSION_BETA` and
    :data:`EXPRESSION_D_CUTOFF` for the speed (units/s of a coefficient, not rad/s)."""
    return SmoothingConfig(min_cutoff=config.min_cutoff, beta=EXPRESSION_BETA, d_cutoff=EXPRESSION_D_CUTOFF,
                           enabled=config.enabled)


def _np(x) -> np.ndarray:
    """torch tensor or array -> numpy array (detached, on the CPU)."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------- wiring
def limit_numpy_blas_threads(n: int) -> bool:
    """Cap the OpenBLAS thread pools loaded in this process (numpy's, and the copies other wheels
    bundle) at ``n`` (what ``OPENBLAS_NUM_THREADS`` does at start-up); returns False where none is
    loaded (another BLAS, another OS: then nothing changes).

    Why: OpenBLAS threads spin while they wait for work.  With a 936 x 58 Gauss-Newton product
    per tracked face (and the IK's small matrices) they took the core MediaPipe runs on: on
    the 2-core machine the face tracker went from ~3 ms to ~46 ms per frame inside a capture.
    """
    import ctypes
    import re

    try:
        with open("/proc/self/maps") as f:
            libs = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
    except OSError:
        return False
    done = False
    for path in libs:                       # numpy's, and copies other wheels (OpenCV, SciPy) bundle
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(int(n)))
                done = True
    return done


def build_pipeline(options: CaptureOptions, detector: Detector | None = None) -> CapturePipeline:
    """Load the real components for ``options``: detector, IK nets, body model, face fitter.

    Raises :class:`~model_runtime.core.errors.ModelFileError` naming a missing/bad model file.
    """
    from ..models.load import load_body_model
    from ..ik.inference import IKSolver
    from ..detectors import make_detector

    device = options.resolved_device()
    if device == "cpu":
        import os

        import torch

        # the detect thread keeps one core busy; torch's and numpy's BLAS pools would fight it for it
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
        limit_numpy_blas_threads(max(1, (os.cpu_count() or 2) - 1))
    body = load_body_model(options.body_model)
    ik = IKSolver(device=device, body_model=body)
    face = None
    if options.face:
        from ..models.load import load_face_model
        from ..face.fit import FaceFitter

        face = FaceFitStage(FaceFitter(load_face_model(options.face_model), device=device))
    if detector is None:
        kw = {"model_complexity": options.model_complexity} if options.detector == "mediapipe" else {}
        detector = make_detector(options.detector, device=device, **kw)
    return CapturePipeline(detector=detector, ik=ik, body=body, face=face, options=options)
