"""The capture pipeline: frames -> detector -> IK -> face -> translation -> filters -> capture file.

Four threads overlap the work, joined by bounded queues (so memory stays flat whatever the clip
length)::

    [decode thread]  source frames ──q──> [detect thread] detector ──q──> [fitting thread, nice +10]
                                                                           hand sides, IK, shape,
                                                                           face tracker, Eq. 14,
                                                                           filters, gap filling,
                                                                           writer
                            [face thread, low priority] keyframe face fit <──┘

OpenCV decoding and MediaPipe release the GIL, so on two cores decoding and detection of frame
t+1 run while frame t is fitted.  The fitting thread runs at a lower OS priority: MediaPipe's graph
threads, the capture's bottleneck, come first, and the fitting takes the CPU they leave idle (the
caller's thread only waits for it).  The face is split in two: every frame's head pose and
expression come from a fast landmark tracker (~2-4 ms, inline); the photometric part (closed
form, ~25 ms) runs on keyframes at a lower OS priority (:mod:`.keyframes`) and gives the clip's
albedo and the lighting, so it does not slow the body capture down.  Cancellation (an
:class:`threading.Event`, set by ``serve``'s cancel or by Ctrl-C) is checked between frames in
every stage.  On cancel, a source error or a crash the frames already fitted are finished (held
gap/shape buffers drained) and :meth:`CaptureWriter.abort` keeps them; the raised error carries
``partial_output`` (path or None) and names it in its message.

Per-clip estimates: beta and alpha are the weighted median over the first ``shape_window`` valid
frames (:class:`ShapeEstimator`); in offline mode the frames before that are held back so every
frame's translation uses the same skeleton.  Live sources (cameras) never wait: they use the
running estimate and hold-filling (interpolation would need future frames).

Camera-frame convention (the one place it is decided): ``pose_6d[t, 0]`` is the pelvis rotation
that maps the body model's rest frame (Y up, facing +Z) into the camera frame (x right, y down,
z forward).  The IK networks receive the detector's keypoints in camera axes and return exactly
this root rotation; the model posed with ``pose_6d``, scaled by ``scale`` about the model origin
and shifted by ``transl`` lands on the person in the camera frame::

    X_cam = scale * LBS(betas, pose_6d) + transl,    [u v 1]^T ~ camera_K X_cam

Modules: :mod:`.workers` (threads), :mod:`.fitting` (records, IK), :mod:`.keyframes`,
:mod:`.postprocess` (Eq. 14, filters, gaps), :mod:`.output` (file rows), :mod:`.clip` (one clip's
state), :mod:`.records` (the typed values between them).
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.blas import limit_numpy_blas_threads
from ..core.errors import CancelledError, NoPersonError, RuntimeErrorBase
from ..core.options import CaptureOptions
from ..detectors.base import Detector
from ..face.stage import FaceStage
from ..models.body_model import BodyModel
from .align import ModelKeypoints
from .align_clip import ClipAlignment
from .clip import ClipCapture
from .feet import default_ankle_height
from .feet_stage import FootStage
from .focal import clip_camera
from .fitting import IKStage
from .output import KEYPOINT_NAMES, CaptureOutput, ClipValues
from .postprocess import expression_smoothing
from .records import CaptureResult, FrameCallback, ProgressCallback, StageTimer
from .sources import FrameSource
from .workers import (FIT_THREAD_NICE, POLL_S, DetectionStream, detected_queue_size,
                      lower_thread_priority)

log = logging.getLogger(__name__)

#: the options schema lives in :mod:`model_runtime.core.options` (shared with ``serve`` and the add-on)
__all__ = ["CaptureOptions", "CapturePipeline", "CaptureResult", "KEYPOINT_NAMES", "build_pipeline",
           "expression_smoothing"]


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
        self._keypoints: ModelKeypoints | None = None     # the image-aligned fit's model keypoints
        self._ankle_height = default_ankle_height(body)   # feet: rest ankle height above the soles

    def rest_joints(self, betas: np.ndarray) -> np.ndarray:
        """Rest joints ``(52, 3)`` of the body model for ``betas (16,)`` (:meth:`BodyModel.rest_joints`)."""
        return self.body.rest_joints(betas)

    def run(self, source: FrameSource, output: Path | str | None, cancel: threading.Event | None = None,
            on_progress: ProgressCallback | None = None, on_frame: FrameCallback | None = None,
            static_extra: Mapping[str, Any] | None = None, live: bool | None = None) -> CaptureResult:
        """Capture ``source`` into ``output`` (``.npz``; None = do not write).

        ``on_progress(frames_done, total_or_None, fps)`` and ``on_frame(record)`` (the
        written :class:`FrameRecord`) are called from the fitting thread after every written
        frame (one thread, of lower priority: :data:`.workers.FIT_THREAD_NICE`); this thread
        waits for it, so Ctrl-C still reaches it.
        Returns a :class:`CaptureResult`; raises :class:`CancelledError` when ``cancel`` is set,
        the source's error (e.g. :class:`SourceLostError`), or :class:`NoPersonError` when no
        frame had a person -- each with ``partial_output`` set.  ``live`` (default:
        ``source.is_live``) emits every frame at once (running shape estimate, hold-filling)
        instead of holding frames back for the clip's shape.
        """
        cancel = cancel or threading.Event()
        stop_workers, timer = threading.Event(), StageTimer()
        clip, out = self._start_clip(source, output, live, static_extra, stop_workers, timer, on_frame, on_progress)
        stream = DetectionStream(source, self.detector, timer, self.options.queue_size, stop_workers,
                                 detected_queue_size(source.image_size, self.options.queue_size, clip.live))
        batch_size = 1 if clip.live else self.options.ik_batch
        errors: list[BaseException] = []
        fit_cpu = [0.0]

        def fit() -> None:
            """The fitting loop, in its own thread of lower priority (:data:`.workers.FIT_THREAD_NICE`)."""
            lower_thread_priority(FIT_THREAD_NICE)
            c0 = time.thread_time()
            try:
                while (batch := stream.next_batch(batch_size, cancel)) is not None:
                    if not batch:
                        raise CancelledError(f"{source.description}: capture cancelled after {out.frames} frames")
                    out.emit(clip.process(batch))
                    out.write_clip_values()
                out.emit(clip.finish())
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                errors.append(e)
            finally:
                fit_cpu[0] = time.thread_time() - c0

        stream.start()
        fitter = threading.Thread(target=fit, name="capture-fit", daemon=True)
        try:
            fitter.start()
            while fitter.is_alive():     # the caller's thread waits here, so Ctrl-C (SIGINT) still reaches it
                fitter.join(POLL_S)
        except BaseException as e:  # noqa: BLE001 - Ctrl-C / SIGTERM: the fitting stops at the next frame
            cancel.set()
            errors.insert(0, e)
            while fitter.is_alive():
                try:
                    fitter.join(POLL_S)
                except KeyboardInterrupt:   # a second Ctrl-C/SIGTERM does not lose the fitted frames
                    log.warning("interrupted again; stopping after the frame being fitted")
        finally:
            stop_workers.set()
            stream.join()
        error = errors[0] if errors else None
        wall = time.perf_counter() - out.t_start
        if error is not None:
            self._fail(error, clip, out, source)
        clip.close()
        path = out.close(keep=clip.valid_frames > 0)   # no person anywhere: kept like a failed run
        if clip.valid_frames == 0:
            err = NoPersonError(f"{source.description}: no person found in any of the {out.frames} frames "
                                f"({source.start}..{source.start + out.frames - 1})")
            _attach_partial(err, path, out.frames)
            raise err
        return CaptureResult(output=path, frames=out.frames, valid_frames=clip.valid_frames, cancelled=False,
                             wall_s=wall, stage_ms=timer.mean_ms(), hand_swaps=clip.hands.swaps,
                             dropped_frames=timer.dropped, face_fits=timer.count["face"],
                             stage_cpu_ms=timer.mean_cpu_ms(), fitting_cpu_s=fit_cpu[0])

    def _start_clip(self, source: FrameSource, output, live: bool | None, static_extra, stop: threading.Event,
                    timer: StageTimer, on_frame, on_progress) -> tuple[ClipCapture, CaptureOutput]:
        """Camera, face and detector reset for a new clip; its state and its output file."""
        opts = self.options
        live = source.is_live if live is None else live
        camera = clip_camera(source.image_size, opts.fov, opts.calibration, estimate=opts.align and not live,
                             metadata_focal=source.focal_px)
        K = camera.K
        align = None
        if opts.align:
            if self._keypoints is None:
                self._keypoints = ModelKeypoints(self.body)
            align = ClipAlignment(self._keypoints, camera, fps=source.fps, lookahead=not live,
                                  scene_window=opts.shape_window,
                                  smoothing=opts.smoothing)
        if self.face is not None:
            self.face.reset(K)
        reset = getattr(self.detector, "reset", None)   # optional in the Detector protocol: forget tracking
        if callable(reset):
            reset()
        feet = None
        if opts.feet:
            feet = FootStage(self.rest_joints, self.body.parents, lambda: camera.K, source.fps, self._ankle_height,
                             lookahead=not live, up=align.scene_up if align is not None else None)
        clip = ClipCapture(self.ik, self.face, self.rest_joints, self.body.parents, opts, K,
                           live=live, stop=stop, timer=timer, align=align, feet=feet)
        values = ClipValues(clip.shape, self.face, opts.body_model, opts.face_model, camera, feet)
        try:
            out = CaptureOutput(output, values, source, K, static_extra, opts.chunk_frames, timer,
                                on_frame, on_progress)
        except BaseException:
            clip.close()
            raise
        return clip, out

    @staticmethod
    def _fail(error: BaseException, clip: ClipCapture, out: CaptureOutput, source: FrameSource) -> None:
        """Keep what was fitted before ``error`` (a partial capture) and raise ``error`` naming it."""
        try:
            out.emit(clip.finish())   # finish what was fitted: held gap/shape buffers, the feet's open span
        except KeyboardInterrupt:   # a second Ctrl-C/SIGTERM does not stop the keeping
            log.warning("interrupted again while finishing the held frames; the frames written so far are kept")
        except Exception:  # noqa: BLE001 - keep the first error
            log.exception("could not finish the held frames")
        clip.close()
        partial = out.close(keep=False)
        _attach_partial(error, partial, out.frames)
        if isinstance(error, KeyboardInterrupt):
            raise CancelledError(
                f"{source.description}: interrupted after {out.frames} frames"
                + (f"; the finished frames are kept in {partial}" if partial else "")
            ) from error
        raise error


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


def build_pipeline(options: CaptureOptions, detector: Detector | None = None) -> CapturePipeline:
    """Load the real components for ``options``: detector, IK nets, body model, face fitter.

    Raises :class:`~model_runtime.core.errors.ModelFileError` naming a missing/bad model file.
    """
    from ..ik.inference import IKSolver
    from ..models.load import load_body_model

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
        from ..face.stage_factory import make_face_stage
        from ..models.load import load_face_model

        face = make_face_stage(options.face_mode, load_face_model(options.face_model), device=device,
                               facenet_weights=options.facenet_weights, facenet_profile=options.facenet_profile)
    if detector is None:
        from ..detectors import detector_from_options

        detector = detector_from_options(options)
    return CapturePipeline(detector=detector, ik=ik, body=body, face=face, options=options)
