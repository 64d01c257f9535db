"""Draw what the scene's focal estimate (model_runtime/capture/scene_focal.py) sees in a few images:
every straight edge in grey, the edges of each vanishing point in its colour (the strongest first:
red, green, blue, yellow), and the frame's estimate.

    python tools/scene_focal_view.py OUT.png IMAGE_OR_VIDEO[:FRAME] ... [--width 520] [--true F ...]

``--true`` gives each image's calibrated focal (px, 0 = unknown), printed beside the estimate.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime.capture.focal import MAX_LOG_F_STD  # noqa: E402
from model_runtime.capture.scene_focal import (focal_from_vanishing_points, line_segments,  # noqa: E402
                                               vanishing_points)

COLOURS = [(40, 40, 230), (40, 200, 40), (230, 120, 30), (0, 220, 230)]


def read(spec: str) -> np.ndarray:
    path, _, frame = spec.rpartition(":")
    if path and frame.isdigit() and Path(path).exists():
        cap = cv2.VideoCapture(path)
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(frame))
        ok, img = cap.read()
        if not ok:
            raise SystemExit(f"{spec}: no frame {frame}")
        return img
    img = cv2.imread(spec)
    if img is None:
        raise SystemExit(f"{spec}: not an image")
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--width", type=int, default=520)
    ap.add_argument("--true", type=float, nargs="*", default=[])
    a = ap.parse_args()
    tiles = []
    for k, spec in enumerate(a.images):
        img = read(spec)
        H, W = img.shape[:2]
        seg = line_segments(img)
        vps = vanishing_points(seg, (W, H))
        est = focal_from_vanishing_points(vps, seg, (W, H)) if len(vps) >= 2 else None
        out = (0.6 * img).astype(np.uint8)
        s = a.width / W
        out = cv2.resize(out, (a.width, round(H * s)), interpolation=cv2.INTER_AREA)
        for x1, y1, x2, y2 in seg * s:
            cv2.line(out, (round(x1), round(y1)), (round(x2), round(y2)), (150, 150, 150), 1, cv2.LINE_AA)
        for i, v in enumerate(vps):
            for x1, y1, x2, y2 in seg[v.inliers] * s:
                cv2.line(out, (round(x1), round(y1)), (round(x2), round(y2)), COLOURS[i % 4], 3, cv2.LINE_AA)
        used = est is not None and est.focal is not None and est.log_std <= MAX_LOG_F_STD
        text = (f"f {est.focal:.0f} px ({2 * math.degrees(math.atan(0.5 * max(W, H) / est.focal)):.0f} deg), "
                f"std {est.log_std:.2f}" if used else "no estimate")
        true = a.true[k] if k < len(a.true) else 0.0
        if true > 0:
            text += f"; calibrated {true:.0f}"
        cv2.rectangle(out, (0, 0), (a.width, 26), (0, 0, 0), -1)
        cv2.putText(out, text, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
        print(f"{spec}: {text}")
        tiles.append(out)
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, 4), (0, 0))) for t in tiles]
    cv2.imwrite(a.out, np.hstack(tiles))


if __name__ == "__main__":
    main()
