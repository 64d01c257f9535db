"""The legs of a few frames of two captures of the same video, side by side: python
tools/leg_lock_view.py VIDEO A.npz B.npz OUT.png FRAME [FRAME ...] [--labels A,B]

Each row is one frame, cropped around the detected hips, knees and feet: the video with the
detector's leg points (green) and each capture's projected leg keypoints (red), yellow lines
between matching points.  Used for the knee swivel of the foot lock (docs/fidelity.md, session 14)."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import cv2
import numpy as np

from model_runtime.core.capture_file import load_capture
from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES
from model_runtime.evals import render_avatar as R
from model_runtime.evals.video import PosedCapture, VideoFrames, crop_box, project

LEG = [BODY_KEYPOINT_NAMES.index(f"{s}_{p}") for s in ("left", "right")
       for p in ("hip", "knee", "ankle", "heel", "big_toe")]
PANEL = 360


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--labels")]
    labels = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--labels=")), "A,B").split(",")
    video, a, b, out, frames = args[0], args[1], args[2], args[3], [int(f) for f in args[4:]]
    caps = [load_capture(a), load_capture(b)]
    posed = [PosedCapture(c) for c in caps]
    images = VideoFrames(video, caps[0]).read(np.array(frames))
    size = tuple(int(v) for v in caps[0]["image_size"])
    rows = []
    for t in frames:
        kp = caps[0]["keypoints_2d"][t].astype(np.float64)
        used = np.zeros(len(kp), bool)
        used[LEG] = kp[LEG, 2] >= 0.5
        x0, y0, s = crop_box(kp[used, :2], size, margin=0.25)
        A = np.array([[PANEL / (s * size[0]), 0, -x0 * PANEL / (s * size[0])],
                      [0, PANEL / (s * size[1]), -y0 * PANEL / (s * size[1])]])
        crop = cv2.warpAffine(images[t], A, (PANEL, PANEL), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        row = []
        for cap, P, name in zip(caps, posed, labels):
            model = project(P.keypoints[t], cap["camera_K"].astype(np.float64))
            to = lambda p: p @ A[:, :2].T + A[:, 2]
            pts = np.full_like(model, np.nan)
            pts[LEG] = model[LEG]
            det = np.full_like(kp[:, :2], np.nan)
            det[LEG] = kp[LEG, :2]
            panel = R.draw_keypoints(crop, to(det), to(pts), used)
            err = np.linalg.norm(model[LEG] - kp[LEG, :2], axis=-1)[used[LEG]]
            R.label(panel, f"{t} {name}: legs {np.median(err):.1f} px median")
            row.append(panel)
        rows.append(np.concatenate(row, 1))
    cv2.imwrite(out, np.concatenate(rows, 0), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    main()
