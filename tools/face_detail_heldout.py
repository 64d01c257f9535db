"""Held-out check of the face's colour detail (docs/face.md):

    .venv/bin/python tools/face_detail_heldout.py CLIP VIDEO

captures VIDEO with the detail sampled from its first 8 samples only (face frames 20..104), then scores
``eval face-video``'s whole-face ``render_error`` on up to 12 frames from frame 150 on (never sampled),
with and without the detail.  Needs the landmark cache out/face_clips/lm/CLIP.lm.npz (tools/face_clips_run.sh)."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import numpy as np  # noqa: E402

import model_runtime.face.albedo_detail as AD  # noqa: E402
import model_runtime.face.stage as ST  # noqa: E402
from model_runtime.cli.main import main  # noqa: E402
from model_runtime.core.capture_file import load_capture  # noqa: E402
from model_runtime.evals import face_video as FV  # noqa: E402

AD.MAX_SAMPLES = ST.MAX_SAMPLES = 8
clip, video = sys.argv[1], Path(sys.argv[2])
out = Path(f"out/face_clips/heldout_{clip}.npz")
main(["capture", str(video), "-o", str(out), "--quiet", "--overwrite"])
cap = load_capture(out)
meas = FV.cached_measure(video, Path(f"out/face_clips/lm/{clip}.lm.npz"), cap.num_frames)
use = np.flatnonzero(cap["valid"] & meas["found"][:cap.num_frames])
late = use[use >= 150]
frames = late[np.linspace(0, len(late) - 1, min(12, len(late))).round().astype(int)]
res = {}
for tag in ("with", "without"):
    if tag == "without":
        cap.data["face_albedo_detail"] = np.zeros((0, 3), np.float32)
    res[tag] = FV.colour_figures(cap, FV.CapturedFace(cap), meas, video, frames)["face"]["render_error"]
print(f"{clip}: frames {int(frames.min())}-{int(frames.max())}, whole-face render_error {res}")
