"""Keyframe scheduling: which face frames get an appearance fit, and when a fitted frame may leave.

Every face frame is tracked (expression, head pose); a *keyframe* also gets the photometric fit
(:meth:`FaceStage.fit_appearance`, in :class:`workers.KeyframeFaceWorker`), which gives the
clip's albedo and the lighting ``sh (27,)`` that the frames from the keyframe on carry.  Modes:

* **adaptive** (``face_every=0``, default): a keyframe when the worker is idle and at least
  :data:`KEYFRAME_GAP_S` after the last one.  Offline, the clip's first keyframe holds the frames
  from it on until its fit is done (so every file frame has a fitted lighting); later ones never
  hold a frame: their lighting goes to the frames released after they finish.
* **every N** (``face_every=N``): every N-th face frame, each waited for (deterministic, slower).
* **live**: never waits; a fit that finished since the last frame goes to the next frame out.
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable, Final

import numpy as np

from ..detectors.base import Detection
from .records import FrameRecord
from .sources import Frame
from .workers import KeyframeFaceWorker

#: adaptive mode: seconds of video between two keyframes (closed-form albedo + lighting, ~25-50 ms
#: of CPU each on the 2-core test machine).  Lighting and albedo change slowly; a keyframe every
#: second cost a few % of the bench ratio at load 5-7 (docs/bench.md), every 5 s is within noise
KEYFRAME_GAP_S: Final[float] = 5.0


class KeyframeScheduler:
    """Starts keyframe fits (:meth:`submit_if_keyframe`) and gates the release of fitted frames
    (:meth:`may_release`, :meth:`lighting`), in file order, for one clip.

    Args:
        worker: runs the fits.
        every: ``face_every``: 0 = adaptive, N = every N-th face frame.
        live: never hold a frame back.
        current_sh: the face stage's latest lighting (used before any keyframe was released).
    """

    def __init__(self, worker: KeyframeFaceWorker, every: int, live: bool,
                 current_sh: Callable[[], np.ndarray]):
        self.worker, self.every, self.live, self._current_sh = worker, int(every), live, current_sh
        self._face_frames = 0
        self._last_keyframe_time = -np.inf         # time (s) of the last keyframe started (adaptive)
        self._sh: np.ndarray | None = None         # lighting of the last keyframe applied (file order)
        self._unwaited: list[Future] = []          # fits nobody waits for (live; adaptive after the first)

    def submit_if_keyframe(self, frame: Frame, detection: Detection, seed: Any) -> Future | None:
        """Called for every tracked face frame, in order: start its keyframe fit if it is one.
        -> the fit's future (for :attr:`FrameRecord.keyframe_fit`), or None."""
        fit = None
        if self.every == 0:
            if frame.time - self._last_keyframe_time >= KEYFRAME_GAP_S:
                fit = self.worker.submit_if_idle(frame.image, detection, seed)
                if fit is not None:
                    self._last_keyframe_time = frame.time
        elif self._face_frames % self.every == 0:
            fit = self.worker.submit(frame.image, detection, seed)
        self._face_frames += 1
        return fit

    def may_release(self, rec: FrameRecord, final: bool) -> bool:
        """Whether ``rec``, the oldest held frame, may leave now (False: hold it and the frames
        after it until its keyframe fit is done).  Applies the lighting of the fits finished by
        now; ``final`` (end of the clip): waits for the fits the frames need instead of holding."""
        fit = rec.keyframe_fit
        if self.live and not final:
            if fit is not None:
                self._unwaited.append(fit)
            self._apply_finished()
        elif fit is not None:
            if self._sh is None or self.every > 0 or fit.done():
                if not final and not fit.done():
                    return False
                self._apply(self.worker.result(fit))
            elif not final:
                self._unwaited.append(fit)         # adaptive: later keyframes never hold frames
        if not self.live and self._unwaited:
            self._apply_finished()
        return True

    def lighting(self) -> np.ndarray:
        """The lighting ``(27,)`` of a face frame released now."""
        return self._sh if self._sh is not None else self._current_sh().astype(np.float64)

    def _apply_finished(self) -> None:
        for fit in [f for f in self._unwaited if f.done()]:
            self._apply(self.worker.result(fit))
            self._unwaited.remove(fit)

    def _apply(self, sh: np.ndarray | None) -> None:
        """A keyframe fit finished (``sh (27,)``, None if it failed): frames from here on get its lighting."""
        if sh is not None:
            self._sh = np.asarray(sh, np.float64)
