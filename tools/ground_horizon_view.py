"""The capture's ground plane over the video (issue 10, feet): the plane's horizon (its vanishing line,
``K^-T n``) and a 0.5 m grid on it around the planted feet, drawn over a frame, for one or more captures
of the same clip; with ``--scene`` also the scene's horizon through its horizontal vanishing points
(model_runtime/capture/scene_focal.py), which the plane's should meet.

    python tools/ground_horizon_view.py OUT.png VIDEO FRAME CAPTURE.npz [CAPTURE2.npz ...] [--scene] [--width 540]

Prints, per capture, where its horizon crosses the image's centre column, and the scene's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime.capture.scene_focal import horizon_line, line_segments, vanishing_points  # noqa: E402
from model_runtime.core.capture_file import load_capture  # noqa: E402

COLOURS = [(60, 60, 240), (60, 220, 60), (240, 160, 40)]


def horizon_y(n: np.ndarray, K: np.ndarray, x: float) -> float:
    """Image row where the plane with normal ``n`` (camera frame) has its vanishing line at column ``x``."""
    a, b, c = np.linalg.inv(K).T @ n                      # vanishing line a x + b y + c = 0
    return float(-(a * x + c) / b)


def plane_grid(plane: np.ndarray, centre: np.ndarray, half: float = 1.5, step: float = 0.5) -> list[np.ndarray]:
    """Line segments ``(2, 3)`` of a square grid on ``plane (4,)`` around ``centre (3,)`` (camera frame, m)."""
    n = plane[:3] / np.linalg.norm(plane[:3])
    c = centre - (centre @ n + plane[3]) * n
    u = np.cross(n, [0.0, 0.0, 1.0])
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    out = []
    for s in np.arange(-half, half + 1e-9, step):
        out.append(np.stack([c + s * u - half * v, c + s * u + half * v]))
        out.append(np.stack([c + s * v - half * u, c + s * v + half * u]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("video")
    ap.add_argument("frame", type=int)
    ap.add_argument("captures", nargs="+")
    ap.add_argument("--scene", action="store_true")
    ap.add_argument("--width", type=int, default=540)
    a = ap.parse_args()
    cap = cv2.VideoCapture(a.video)
    cap.set(cv2.CAP_PROP_POS_FRAMES, a.frame)
    ok, img = cap.read()
    if not ok:
        raise SystemExit(f"{a.video}: no frame {a.frame}")
    H, W = img.shape[:2]
    tiles = []
    for k, path in enumerate(a.captures):
        c = load_capture(path)
        K, plane = c["camera_K"].astype(np.float64), np.asarray(c["ground_plane"], np.float64)
        out = img.copy()
        if np.linalg.norm(plane[:3]) == 0:
            print(f"{path}: no ground plane")
            tiles.append(out)
            continue
        from model_runtime.evals.video import ANKLES, PosedCapture

        joints = PosedCapture(c).joints
        feet = joints[:, ANKLES][np.asarray(c["foot_contact"], bool)]
        centre = feet.mean(0) if len(feet) else joints[a.frame, ANKLES].mean(0)
        for seg in plane_grid(plane, centre):
            if (seg[:, 2] < 0.1).any():
                continue
            p = (seg @ K.T)[:, :2] / (seg @ K.T)[:, 2:]
            cv2.line(out, tuple(np.round(p[0]).astype(int)), tuple(np.round(p[1]).astype(int)), COLOURS[k % 3], 3, cv2.LINE_AA)
        y = [horizon_y(plane[:3], K, x) for x in (0.0, W - 1.0)]
        cv2.line(out, (0, round(y[0])), (W - 1, round(y[1])), COLOURS[k % 3], 6, cv2.LINE_AA)
        yc = horizon_y(plane[:3], K, K[0, 2])
        print(f"{path}: camera {str(c['camera_source'])} f {K[0, 0]:.0f} px, plane horizon at the centre column y = {yc:.0f} px, "
              f"camera {plane[3]:.2f} m above the plane")
        tiles.append(out)
    if a.scene:
        vps = vanishing_points(line_segments(img), (W, H))
        line = horizon_line(vps, (W, H))
        if line is not None:
            yy = [-(line[0] * x + line[2]) for x in (0.0, W - 1.0, W / 2.0)]
            for t in tiles:
                cv2.line(t, (0, round(yy[0])), (W - 1, round(yy[1])), (0, 230, 255), 3, cv2.LINE_AA)
            print(f"scene horizon (scene_focal.horizon_line) at the centre column y = {yy[2]:.0f} px")
    s = a.width / W
    tiles = [cv2.resize(t, (a.width, round(H * s)), interpolation=cv2.INTER_AREA) for t in tiles]
    cv2.imwrite(a.out, np.hstack(tiles))


if __name__ == "__main__":
    main()
