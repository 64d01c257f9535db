"""Where a capture's wall time goes: python tools/capture_timeline.py VIDEO N [SHAPE_WINDOW] [--stages]
(two runs of the first N frames, the real MediaPipe pipeline): when the first and last detections came,
how long the run went on after the last one, and when the fitting released frames.  ``--stages`` also
lists the fitting thread's calls (``ClipCapture.process`` and ``MotionPostprocessor.push`` over 20 ms,
the shape freezes, ``finish``, the face worker's keyframe appearance fits) with their start and end, seconds
from the run's start."""
import sys, time, tempfile, threading
from pathlib import Path as _P
sys.path[:0] = [str(_P(__file__).resolve().parents[1])]
from pathlib import Path
from model_runtime.capture.pipeline import build_pipeline
from model_runtime.capture.sources import open_source
from model_runtime.core.options import CaptureOptions
import model_runtime.capture.clip as C
import model_runtime.capture.postprocess as PP
import model_runtime.capture.tracking as TR
import model_runtime.face.stage as FS

stages = "--stages" in sys.argv
argv = [a for a in sys.argv[1:] if a != "--stages"]
video, n = argv[0], int(argv[1])
events = []


def timed(cls, name, tag):
    orig = getattr(cls, name)

    def call(self, *a, **k):
        t = time.perf_counter()
        r = orig(self, *a, **k)
        events.append((tag, t, time.perf_counter(), threading.current_thread().name))
        return r
    setattr(cls, name, call)


if stages:
    timed(C.ClipCapture, "process", "process")
    timed(C.ClipCapture, "finish", "finish")
    timed(PP.MotionPostprocessor, "push", "postprocess.push")
    timed(TR.ShapeEstimator, "freeze", "shape.freeze")
    timed(FS.FaceFitStage, "fit_appearance", "face.fit_appearance")
    timed(FS.FaceFitStage, "track", "face.track")
    timed(PP.MotionPostprocessor, "calibrate_early", "calibrate_early")
for rep in range(2):
    events.clear()
    pipe = build_pipeline(CaptureOptions(device='cpu', end=n, **({'shape_window': int(argv[2])} if len(argv) > 2 else {})))
    det = pipe.detector; orig = det.detect; ts = []
    def detect(img, timestamp_ms=None):
        r = orig(img, timestamp_ms); ts.append(time.perf_counter()); return r
    det.detect = detect
    rel = []
    o_ready = C.ClipCapture._release_ready
    def rr(self, final):
        out = o_ready(self, final); rel.append((time.perf_counter(), len(out), final)); return out
    C.ClipCapture._release_ready = rr
    with tempfile.TemporaryDirectory() as tmp, open_source(video, end=n) as src:
        t0 = time.perf_counter()
        res = pipe.run(src, Path(tmp) / 'x.npz')
        t1 = time.perf_counter()
    C.ClipCapture._release_ready = o_ready
    print(f'run {t1-t0:.2f} s: first detection {ts[0]-t0:.2f}, last detection {ts[-1]-t0:.2f}, after it {t1-ts[-1]:.2f}; '
          f'releases {[(round(t-t0,2), k) for t, k, f in rel if k or f]}')
    for tag, a, b, thread in events:
        if b - a > 0.02 or tag not in ("process", "postprocess.push", "face.track"):
            print(f'    {tag:18s} {a - t0:6.3f}-{b - t0:6.3f} s ({1000 * (b - a):4.0f} ms, {thread})')
    pipe.detector.close()
