"""Time the face tracker alone (FaceStage.track, best of 3 runs) on recorded detections, as the capture
runs it: python tools/face_tracker_bench.py REC.npz [save|compare] (REC.npz from tools/record_detections.py;
save/compare: the expressions in REC.npz.expr.npy, to check that a faster tracker gives the same result)."""
import sys
import time
from pathlib import Path
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / 'tests')]
import numpy as np
import test_capture_orchestration as tco
tco.RECORDING = sys.argv[1]
from model_runtime.capture.pipeline import build_pipeline
from model_runtime.core.options import CaptureOptions
from model_runtime.geometry.camera import intrinsics_from_fov
det = tco.ReplayDetector()
pipe = build_pipeline(CaptureOptions(device='cpu'), detector=det)
face = pipe.face
K = intrinsics_from_fov(det.size, 60.0)
rec = det.rec
dets = [det.recorded(i) for i in range(len(rec['index']))]
best, out = 1e9, None
for rep in range(3):
    face.reset(K); exprs = []
    t0 = time.thread_time()
    for d in dets:
        r = face.track(None, d)
        exprs.append(np.zeros(52) if r is None else r[0])
    dt = time.thread_time() - t0
    best = min(best, dt); out = np.array(exprs)
print(f'{1000*best/len(dets):.2f} ms/frame ({sum(d.face_landmarks is not None for d in dets)} face frames)')
if len(sys.argv) > 2 and sys.argv[2] == 'save': np.save(sys.argv[1] + '.expr.npy', out)
if len(sys.argv) > 2 and sys.argv[2] == 'compare':
    ref = np.load(sys.argv[1] + '.expr.npy'); print('max |d expr|', np.abs(ref - out).max(), 'mean', np.abs(ref-out).mean())
