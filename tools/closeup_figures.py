"""Face close-up figures of captures (docs/fidelity.md, "Face close-ups without shoulders").

    python tools/closeup_figures.py figures CAPTURE.npz [...]      one JSON line per capture
    python tools/closeup_figures.py crop CAPTURE.npz VIDEO OUTDIR [--frames 60] [--factor 1.7] [--box X Y SIZE]

``figures``: ``eval video``'s body and hands medians, the head overlay (the posed model's face
keypoints, nose, eyes and ears, against the detector's: median px and in % of the detector's face
size, the RMS distance of those 5 points from their centroid), the model's face size over the
detector's, the median depth, the fraction of valid frames whose torso (pelvis and chest) is
unseen, hands at the face kept, jitter.

``crop``: a face close-up without shoulders made from a talking clip: its first frames cut to a
square of ``factor`` ear-to-ear widths around the face (median over the frames of a capture's
detected face points; ``--box`` gives the square directly, px), written as an image folder
(``capture OUTDIR`` takes it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FACE = slice(15, 20)            # nose, eyes, ears in keypoints_2d


def _spread(p: np.ndarray) -> np.ndarray:
    return np.sqrt(((p - p.mean(-2, keepdims=True)) ** 2).sum(-1).mean(-1))


def figures(path: str) -> dict:
    from model_runtime.core.capture_file import load_capture
    from model_runtime.core.skeleton import JOINT_NAMES
    from model_runtime.evals.video import PosedCapture, evaluate

    cap = load_capture(path)
    posed = PosedCapture(cap)
    res, _ = evaluate(cap, posed)
    K = cap["camera_K"].astype(np.float64)
    X = posed.keypoints
    z = np.maximum(X[..., 2], 1e-6)
    px = np.stack([K[0, 0] * X[..., 0] / z + K[0, 2], K[1, 1] * X[..., 1] / z + K[1, 2]], -1)
    kp = cap["keypoints_2d"].astype(np.float64)
    valid = cap["valid"].astype(bool)
    used = (kp[:, FACE, 2] >= 0.5) & valid[:, None]
    err = np.linalg.norm(px[:, FACE] - kp[:, FACE, :2], axis=-1)
    size_det, size_mod = _spread(kp[:, FACE, :2]), _spread(px[:, FACE])
    full = used.all(1)
    jc = cap["joint_confidence"]
    torso = [JOINT_NAMES.index(n) for n in ("pelvis", "spine3")]
    hands = res.get("hands", {})
    return {
        "frames": int(valid.sum()),
        "body_median": res["reprojection_px"]["body_median"],
        "hands_median": res["reprojection_px"]["hands_median"],
        "face_median_px": float(np.median(err[used])) if used.any() else None,
        "face_median_pct": float(np.median((err / size_det[:, None])[used]) * 100) if used.any() else None,
        "face_size_ratio": float(np.median(size_mod[full] / size_det[full])) if full.any() else None,
        "depth_m": float(np.median(cap["transl"][valid, 2])) if valid.any() else None,
        "torso_unseen": float(np.mean((jc[valid][:, torso] <= 0).all(1))) if valid.any() else None,
        "at_face_kept": hands.get("at_face_kept"),
        "at_face_frames": hands.get("at_face_frames"),
        "jitter": res["jitter_mm_per_frame2"],
    }


def crop(capture: str | None, video: str, out: Path, frames: int, factor: float, box=None) -> str:
    import cv2

    if box is None:
        kp = np.load(capture)["keypoints_2d"][:frames]
        c = np.median(kp[:, FACE, :2].mean(1), 0)
        w = np.median(np.linalg.norm(kp[:, 18, :2] - kp[:, 19, :2], axis=-1))
        half = int(round(factor * w / 2))
        x0, y0 = int(round(c[0])) - half, int(round(c[1])) - half
    else:
        x0, y0, half = int(box[0]), int(box[1]), int(box[2]) // 2
    out.mkdir(parents=True, exist_ok=True)
    src = cv2.VideoCapture(video)
    n = 0
    for i in range(frames):
        ok, img = src.read()
        if not ok:
            break
        pad = cv2.copyMakeBorder(img, 2 * half, 2 * half, 2 * half, 2 * half, cv2.BORDER_REPLICATE)
        cv2.imwrite(str(out / f"{i:05d}.png"), pad[y0 + 2 * half:y0 + 4 * half, x0 + 2 * half:x0 + 4 * half])
        n += 1
    return f"{out}: {n} frames, crop x {x0} y {y0} size {2 * half} px"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("figures")
    f.add_argument("captures", nargs="+")
    c = sub.add_parser("crop")
    c.add_argument("capture")
    c.add_argument("video")
    c.add_argument("outdir", type=Path)
    c.add_argument("--frames", type=int, default=60)
    c.add_argument("--factor", type=float, default=1.7)
    c.add_argument("--box", type=int, nargs=3, metavar=("X", "Y", "SIZE"), help="the square (px); no capture needed")
    a = p.parse_args(argv)
    if a.cmd == "figures":
        for path in a.captures:
            print(json.dumps({"capture": path, **figures(path)}))
    else:
        print(crop(a.capture, a.video, a.outdir, a.frames, a.factor, a.box))
    return 0


if __name__ == "__main__":
    sys.exit(main())
