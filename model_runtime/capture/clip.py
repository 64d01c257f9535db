"""One clip's capture in the fitting thread: detected frames -> records -> IK -> face -> held until
released (the clip's shape, keyframe fits) -> post-processing.  Everything carried from frame to
frame lives here (or in the stages it owns); the pipeline creates one per capture."""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable, Final

import numpy as np

from ..core.options import CaptureOptions
from ..detectors.base import Detection
from ..face.stage import FaceStage
from .align_clip import ClipAlignment
from .feet_stage import FootStage
from .fitting import IKFitter, IKStage, frame_record
from .keyframes import KeyframeScheduler
from .postprocess import MotionPostprocessor
from .records import DetectedFrame, FrameRecord, StageTimer
from .sources import Frame
from .tracking import HandSideTracker, PersonSwitchDetector, ShapeEstimator
from .workers import KeyframeFaceWorker

log = logging.getLogger(__name__)

#: offline mode holds at most this many times ``shape_window`` frames before freezing the shape
MAX_HELD_FACTOR: Final[int] = 10


class ClipCapture:
    """Fits one clip's frames (:meth:`process` per batch, :meth:`finish` at the end); both return
    the frames ready to write, in order.  :meth:`close` stops the keyframe worker.

    ``live``: emit every frame at once (running shape estimate, hold-filling); offline, frames
    are held until the clip's shape is known (``shape_window`` valid frames) so every frame's
    translation uses the same skeleton, and until the keyframe fit they need is done.
    """

    def __init__(self, ik: IKStage, face: FaceStage | None, rest_joints: Callable[[np.ndarray], np.ndarray],
                 parents: np.ndarray, options: CaptureOptions, K: np.ndarray, live: bool,
                 stop: threading.Event, timer: StageTimer, align: ClipAlignment | None = None,
                 feet: FootStage | None = None):
        self.live, self.timer = live, timer
        self.hands = HandSideTracker()
        self.person = PersonSwitchDetector()
        self.shape = ShapeEstimator(window=options.shape_window)
        self.ik = IKFitter(ik, self.shape, hands=options.hands)
        self.face = face if face is not None and options.face else None
        self.num_expressions = len(face.expression_names) if face is not None else 0
        self.keyframes: KeyframeScheduler | None = None
        if self.face is not None:
            worker = KeyframeFaceWorker(self.face, stop, timer, low_priority=options.face_every == 0)
            self.keyframes = KeyframeScheduler(worker, options.face_every, live, self.face.current_sh)
        self.postprocess = MotionPostprocessor(K, self.shape, rest_joints, parents, options, live,
                                               face=self.face is not None, align=align, feet=feet)
        self.align = align
        self._held: deque[FrameRecord] = deque()   # fitted frames waiting for the clip's shape / their face fit

    @property
    def valid_frames(self) -> int:
        return self.ik.valid_frames

    def process(self, batch: list[DetectedFrame]) -> list[FrameRecord]:
        """Fit detected frames (in order; the IK nets run once for all of them); -> the records
        ready to write (possibly none, or several)."""
        recs = [frame_record(frame, det, t_read, self.hands, self.num_expressions) for frame, det, t_read in batch]
        for rec in recs:
            if rec.valid and self.person.update(rec.time, rec.body_2d):
                rec.track_break = True
                log.info("frame %d: the person moved further than a body can since the last frame with one "
                         "(another person, or a cut): a new track starts", rec.index)
        t0 = self.timer.now()
        self.ik.fit(recs)
        self.timer.since("ik", t0, n=len(recs))
        for rec, (frame, det, _) in zip(recs, batch):
            if self.align is not None and self.align.offer_frame(rec.time, frame.image,
                                                                 rec.body_2d if rec.valid else None):
                self.postprocess.camera_changed()
            if rec.valid and self.face is not None:
                self._track_face(rec, frame, det)
            self._held.append(rec)
        if len(self._held) > MAX_HELD_FACTOR * self.shape.window:
            self.shape.freeze()      # a long start without a person: do not wait forever
        if not (self.live or self.shape.frozen):
            return []
        return self._release_ready(final=False)

    def finish(self) -> list[FrameRecord]:
        """End of stream (or abort): freeze the shape, wait for the face fits, release everything."""
        self.shape.freeze()
        out = self._release_ready(final=True)
        t0 = self.timer.now()
        out += self.postprocess.flush()
        self.timer.since("filter", t0, n=0)
        return out

    def close(self) -> None:
        if self.keyframes is not None:
            self.keyframes.worker.close()
        if self.align is not None:
            self.align.close()

    def _track_face(self, rec: FrameRecord, frame: Frame, det: Detection) -> None:
        """Track the face of one frame (``rec.expression``) and maybe make it a keyframe."""
        t0 = self.timer.now()
        if rec.track_break:
            self.face.new_track()
        tracked = self.face.track(frame.image, det)
        self.timer.since("face_track", t0)
        if tracked is None:
            return
        rec.expression, seed = np.asarray(tracked[0], np.float64), tracked[1]
        if not np.isfinite(rec.expression).all():
            log.warning("frame %d: the face tracker gave a non-finite expression; the face gap is filled",
                        rec.index)
            rec.expression = np.zeros(self.num_expressions)
            return
        rec.face_ok = True
        rec.keyframe_fit = self.keyframes.submit_if_keyframe(frame, det, seed)

    def _release_ready(self, final: bool) -> list[FrameRecord]:
        """Post-process the leading held records whose keyframe fit is done (all if ``final``).
        Offline, the first release waits until it can hold the shape's whole window
        (:attr:`~.tracking.ShapeEstimator.window_end`): the clip's calibration runs on those frames,
        so its result does not depend on how fast the keyframe fits finish; it runs as soon as the
        window is held (:meth:`~.postprocess.MotionPostprocessor.calibrate_early`), not when its
        keyframe fits are done (on a short clip that wait put it after the last detection)."""
        if not (final or self.live) and self.postprocess.calibration_pending and not self._window_ready():
            end = self.shape.window_end
            if self.shape.frozen and end is not None and self._held and self._held[-1].index >= end:
                # the window is here, its keyframe fits are not done: calibrate now, release later
                t0 = self.timer.now()
                self.postprocess.calibrate_early([r for r in self._held if r.index <= end])
                self.timer.since("filter", t0, n=0)
            return []
        ready: list[FrameRecord] = []
        while self._held:
            rec = self._held[0]
            if self.keyframes is not None:
                if not self.keyframes.may_release(rec, final):
                    break
                if rec.face_ok:
                    rec.sh = self.keyframes.lighting()
            ready.append(self._held.popleft())
        t0 = self.timer.now()
        out = self.postprocess.push(ready)
        self.timer.since("filter", t0, n=len(ready))
        return out

    def _window_ready(self) -> bool:
        """Whether every held record up to the shape window's end may leave (its keyframe fit done)."""
        end = self.shape.window_end
        if end is None or self.keyframes is None:
            return True
        for rec in self._held:
            if rec.index > end:
                return True
            if rec.keyframe_fit is not None and not rec.keyframe_fit.done():
                return False
        return False             # the window's end is not held yet
