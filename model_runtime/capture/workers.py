"""The capture's background threads, and the BLAS thread cap.

* :class:`DetectionStream`: a decode thread and a detect thread joined by bounded queues (memory
  stays flat whatever the clip length); the caller takes :class:`DetectedFrame` batches.  They are
  daemon threads, not an executor's: a camera read that never returns must not keep the process
  alive at exit.
* :class:`KeyframeFaceWorker`: the keyframe face fits (:meth:`FaceStage.fit_appearance`) on a
  one-thread :class:`~concurrent.futures.ThreadPoolExecutor` of lower OS priority; each fit is a
  :class:`~concurrent.futures.Future`.
* :func:`warm_imports`: import, off the fitting thread, the modules the per-frame stages load on
  first use.
"""
from __future__ import annotations

import importlib
import logging
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Final

import numpy as np

from ..detectors.base import Detection, Detector
from ..face.stage import FaceStage
from .records import DetectedFrame, StageTimer
from .sources import FrameSource

log = logging.getLogger(__name__)

#: modules the per-frame stages import on first use (the feet stage's ground plane: scipy.optimize,
#: scipy.ndimage; torch rotations: roma).  Imported in the fitting thread they stalled it mid-clip
#: for ~1 s on a quiet machine, 2-3 s under load (cProfile of a replayed tennis capture).
LAZY_STAGE_MODULES: Final[tuple[str, ...]] = ("scipy.optimize", "scipy.ndimage", "roma")
#: nice increment of the keyframe face thread (adaptive mode): below the fitting thread
#: (:data:`FIT_THREAD_NICE`), which is below MediaPipe's threads
FACE_THREAD_NICE: Final[int] = 15
#: nice increment of the fitting thread (:meth:`.pipeline.CapturePipeline.run`): MediaPipe's graph
#: threads come first, the fitting takes the CPU they leave (MediaPipe alone keeps ~1.4 of 2 cores
#: busy).  Tennis, 150 frames, bench ratio (docs/bench.md): 0.81 at the same priority; with the
#: detector's queue of 8: +5 0.87/0.88, +10 0.88/0.92, +19 0.92/0.89; with :data:`DETECTED_QUEUE_BYTES`:
#: +10 0.93/0.95, +19 0.91/0.95.  Not +19: against other busy programs the fitting would crawl
FIT_THREAD_NICE: Final[int] = 10
#: offline, detected frames waiting for the fitting thread: as many as fit in this many bytes of
#: images (at least the capture's ``queue_size``, at most :data:`MAX_DETECTED_FRAMES`), so that the
#: fitting's one-off spikes (the clip's calibration, a face's cold start, ~0.1-0.5 s) do not stall
#: the detector: it detects ahead while the fitting catches up on the CPU it leaves
DETECTED_QUEUE_BYTES: Final[int] = 256 * 2 ** 20
MAX_DETECTED_FRAMES: Final[int] = 64
#: seconds between two looks at a queue or the stop event
POLL_S: Final[float] = 0.05


# --------------------------------------------------------------------------- decode / detect
class _End:
    """Queue sentinel: the stream ended (``error`` is the exception that ended it, if any)."""

    def __init__(self, error: BaseException | None = None):
        self.error = error


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _decode_frames(source: FrameSource, out: queue.Queue, stop: threading.Event, timer: StageTimer,
                   drop_when_full: bool) -> None:
    """Read frames into ``out`` as ``(frame, t_read)``.  ``drop_when_full`` (cameras): when the
    fitting falls behind, the oldest waiting frame is dropped instead of letting latency grow."""
    it = iter(source)
    try:
        while not stop.is_set():
            t0 = timer.now()
            try:
                frame = next(it)
            except StopIteration:
                break
            timer.since("decode", t0)
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
            if not _put(out, item, stop):
                return
        _put(out, _End(), stop)
    except BaseException as e:  # forwarded, raised in the fitting thread after earlier frames
        _put(out, _End(e), stop)


def _detect_frames(detector: Detector, inp: queue.Queue, out: queue.Queue, stop: threading.Event,
                   timer: StageTimer) -> None:
    """Detect the frames of ``inp`` into ``out`` as :class:`DetectedFrame`."""
    last_ts = -1
    try:
        while not stop.is_set():
            try:
                item = inp.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if isinstance(item, _End):
                _put(out, item, stop)
                return
            frame, t_read = item
            ts = max(int(round(frame.time * 1000.0)), last_ts + 1)  # strictly increasing for tracking
            last_ts = ts
            t0 = timer.now()
            det = detector.detect(frame.image, timestamp_ms=ts)
            timer.since("detect", t0)     # CPU: this thread's only (MediaPipe's own threads are not in it)
            if not _put(out, DetectedFrame(frame, det, t_read), stop):
                return
    except BaseException as e:
        _put(out, _End(e), stop)


def _import_all(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - the stage that needs it reports it when it imports it
            log.debug("warm import of %s failed: %s", name, e)


def warm_imports(names: tuple[str, ...] = LAZY_STAGE_MODULES) -> threading.Thread | None:
    """Import ``names`` in a background daemon thread (-> the thread, or None when all are loaded):
    started while the models load and MediaPipe starts its graph, so the stage that needs a module
    later finds it loaded (or waits on the import lock for the rest) instead of importing it
    between two frames."""
    import sys

    todo = tuple(n for n in names if n not in sys.modules)
    if not todo:
        return None
    t = threading.Thread(target=_import_all, args=(todo,), name="capture-imports", daemon=True)
    t.start()
    return t


def detected_queue_size(image_size: tuple[int, int], queue_size: int, live: bool) -> int:
    """Detected frames that may wait for the fitting: ``queue_size`` live (a short queue keeps the
    latency down), offline as many ``(W, H)`` BGR images as fit in :data:`DETECTED_QUEUE_BYTES`,
    between ``queue_size`` and :data:`MAX_DETECTED_FRAMES`.  A cancel stops the fitting at its next
    frame: the frames still waiting (detected, not fitted) are not in the partial capture."""
    if live:
        return queue_size
    w, h = image_size
    return int(max(queue_size, min(MAX_DETECTED_FRAMES, DETECTED_QUEUE_BYTES // max(1, 3 * w * h))))


class DetectionStream:
    """Decodes ``source`` and detects its frames in two threads; :meth:`next_batch` takes them.
    ``queue_size`` frames wait between decoding and detection, ``detected_size`` (default the same)
    between detection and the fitting (:func:`detected_queue_size`).

    ``stop`` ends both threads (set it, then :meth:`join`).
    """

    def __init__(self, source: FrameSource, detector: Detector, timer: StageTimer, queue_size: int,
                 stop: threading.Event, detected_size: int | None = None):
        frames: queue.Queue = queue.Queue(maxsize=queue_size)
        self._detected: queue.Queue = queue.Queue(maxsize=detected_size or queue_size)
        self._end: _End | None = None
        self._threads = [
            threading.Thread(target=_decode_frames, args=(source, frames, stop, timer, source.is_live),
                             name="capture-decode", daemon=True),
            threading.Thread(target=_detect_frames, args=(detector, frames, self._detected, stop, timer),
                             name="capture-detect", daemon=True),
        ]

    def start(self) -> None:
        warm_imports()           # while the detector starts its graph: nothing for the fitting thread to load later
        for t in self._threads:
            t.start()

    def next_batch(self, size: int, cancel: threading.Event) -> list[DetectedFrame] | None:
        """Up to ``size`` detected frames, in order: waits for the first, then for more until
        ``size`` or the end of the stream.  -> ``[]`` when ``cancel`` is set before a frame came,
        None at the end of the stream; raises the error that ended the stream (decoding,
        detection) once the frames before it were taken."""
        batch: list[DetectedFrame] = []
        while self._end is None and len(batch) < size:
            if not batch and cancel.is_set():
                return batch
            try:
                item = self._detected.get(timeout=POLL_S)
            except queue.Empty:
                if batch and cancel.is_set():
                    break
                continue
            if isinstance(item, _End):
                self._end = item
            else:
                batch.append(item)
        if not batch and self._end is not None:
            if self._end.error is not None:
                raise self._end.error
            return None
        return batch

    def join(self, timeout: float = 5.0) -> None:
        for t in self._threads:
            t.join(timeout=timeout)


# --------------------------------------------------------------------------- keyframe face fits
def lower_thread_priority(by: int = FACE_THREAD_NICE) -> None:
    """Lower the calling thread's priority to ``by`` nice steps below the process's (Linux threads
    have their own nice value; elsewhere, or where it is not allowed, leave it as is).

    Not ``SCHED_IDLE``: on a machine with other (niced) work an idle-class thread is starved,
    and a clip's first keyframe, which the offline capture needs for its albedo and lighting,
    took 3-9 s instead of ~0.5 s (bench, tennis.mp4 and s20.mp4).  At nice 10 the worker still
    yields ~90 % of a shared core to the capture's own threads; since the fitting runs at +10 itself,
    the face worker runs at +15 (tennis bench, session 5: its one keyframe 266 ms wall, ratio 0.935)."""
    if not sys.platform.startswith("linux"):     # elsewhere PRIO_PROCESS with a thread id would name a process
        return
    try:
        tid = threading.get_native_id()
        # relative to the process (its main thread), not to the thread that started this one (threads
        # inherit their creator's nice: the face worker is started by the niced fitting thread)
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + by)
        if target > os.getpriority(os.PRIO_PROCESS, tid):     # only ever lower (raising needs privileges)
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except (AttributeError, OSError):
        pass


class KeyframeFaceWorker:
    """Runs keyframe face fits (:meth:`FaceStage.fit_appearance`) one at a time in a background
    thread; each submitted fit is a :class:`Future` of the lighting ``(27,)`` (None if it failed).

    A keyframe fit costs several detector frames on a CPU, so in adaptive mode
    (:meth:`submit_if_idle`) a keyframe is taken only if the worker is idle: decoding, detection,
    IK and the per-frame face tracker keep their speed and the fit uses the CPU time left over
    (``low_priority``: nice :data:`FACE_THREAD_NICE`; on a machine busy with other work it may get
    little, then the lighting is held longer).  :meth:`submit` waits for the previous fit instead
    (``face_every=N``: deterministic, slower).  Once ``stop`` is set, fits not started are skipped
    and :meth:`result` no longer waits.
    """

    def __init__(self, stage: FaceStage, stop: threading.Event, timer: StageTimer, low_priority: bool = True):
        self.stage, self.stop, self.timer = stage, stop, timer
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="capture-face",
                                            initializer=lower_thread_priority if low_priority else None)
        self._last: Future | None = None

    def _fit(self, image: np.ndarray, detection: Detection, seed: Any) -> np.ndarray | None:
        if self.stop.is_set():
            return None
        t0 = self.timer.now()
        try:
            return self.stage.fit_appearance(image, detection, seed)
        finally:
            self.timer.since("face", t0)

    def submit_if_idle(self, image: np.ndarray, detection: Detection, seed: Any) -> Future | None:
        """Start a fit if none is running; -> its future, or None (busy: no keyframe here)."""
        if self._last is not None and not self._last.done():
            return None
        return self.submit(image, detection, seed)

    def submit(self, image: np.ndarray, detection: Detection, seed: Any) -> Future:
        """Start a fit once the previous one has finished; -> its future."""
        if self._last is not None:
            wait_futures([self._last])
        self._last = self._executor.submit(self._fit, image, detection, seed)
        return self._last

    def result(self, fit: Future) -> np.ndarray | None:
        """Wait for ``fit``; -> its lighting, or None (the fit failed, or the capture stopped before
        it finished).  Re-raises the fit's error."""
        if fit.cancelled() or (self.stop.is_set() and not fit.done()):
            return None
        return fit.result()

    def close(self) -> None:
        self.stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
