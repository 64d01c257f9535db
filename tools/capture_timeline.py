"""Where a capture's wall time goes: python tools/capture_timeline.py VIDEO N (two runs of the first N frames,
the real MediaPipe pipeline): when the first and last detections came, how long the run went on after the
last one, and when the fitting released frames."""
import sys, time, tempfile
from pathlib import Path as _P
sys.path[:0] = [str(_P(__file__).resolve().parents[1])]
from pathlib import Path
from model_runtime.capture.pipeline import build_pipeline
from model_runtime.capture.sources import open_source
from model_runtime.core.options import CaptureOptions
video, n = sys.argv[1], int(sys.argv[2])
for rep in range(2):
    pipe = build_pipeline(CaptureOptions(device='cpu', end=n, **({'shape_window': int(sys.argv[3])} if len(sys.argv) > 3 else {})))
    det = pipe.detector; orig = det.detect; ts = []
    def detect(img, timestamp_ms=None):
        r = orig(img, timestamp_ms); ts.append(time.perf_counter()); return r
    det.detect = detect
    import model_runtime.capture.clip as C
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
    pipe.detector.close()
