"""The face tracker's landmark error against the focal length: python tools/face_focal_sweep.py REC.npz [...]
(REC.npz from tools/record_detections.py).  For each factor m the capture's face stage (FaceFitStage: the
identity learnt on the first face frames, then tracked) runs on every recorded frame with the 60-degree
camera's focal times m; prints the mean landmark error (px) and the learnt identity's norm (docs/face.md,
"The face tracker's camera")."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
import numpy as np  # noqa: E402
import test_capture_orchestration as tco  # noqa: E402
from model_runtime.capture.pipeline import build_pipeline  # noqa: E402
from model_runtime.core.options import CaptureOptions  # noqa: E402
from model_runtime.geometry.camera import intrinsics_from_fov  # noqa: E402

FACTORS = (0.5, 1, 1.5, 2, 3, 4, 6, 10)
face = None
for rec in sys.argv[1:]:
    tco.RECORDING = rec
    det = tco.ReplayDetector()
    if face is None:
        face = build_pipeline(CaptureOptions(device="cpu"), detector=det).face
    dets = [det.recorded(i) for i in range(len(det.rec["index"]))]
    print(f"{rec} {det.size}")
    for m in FACTORS:
        K = intrinsics_from_fov(det.size, 60.0)
        K[0, 0] *= m
        K[1, 1] *= m
        face.reset(K)
        tracks = [r[1][0] for r in (face.track(None, d) for d in dets) if r is not None]   # seed = (FaceTrack, ...)
        identity, _ = face.clip_params()
        print(f"  x{m:<4}: landmark error {np.mean([t.landmark_error_px for t in tracks]):.3f} px, "
              f"|identity| {np.linalg.norm(identity):.2f}, face at z {float(tracks[-1].translation[2]):.2f} m")
