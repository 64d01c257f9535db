"""The scene focal estimate (model_runtime/capture/scene_focal.py) on the calibrated real frames and on the
clips in ../shared: per frame the estimate, its std and, where a calibration exists, the error.

    python tools/scene_focal_check.py [--shared ../shared/data/realdata] [--frames 6] [--all-images]

``--all-images`` also runs every .jpg/.png of at least 200 px under ``--shared`` (no boxes) and lists
those that get an estimate.
"""
from __future__ import annotations

import argparse
import math
import pickle
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_runtime.capture.focal import MAX_LOG_F_STD  # noqa: E402
from model_runtime.capture.scene_focal import frame_focal  # noqa: E402

CLIPS = ("GVHMR/docs/example_video/tennis.mp4", "mmhuman3d/demo/resources/single_person_demo.mp4",
         "openpose/examples/media/video.avi", "ROMP/demo/videos/sample_video.mp4",
         "MimicMotion/assets/comparisons/raw_0.mp4", "LivePortrait/assets/examples/driving/d3.mp4",
         "SadTalker/examples/ref_video/WDA_AlexandriaOcasioCortez_000.mp4", "LivePortrait/assets/examples/source/s20.mp4")


def calibrated(root: Path):
    """(name, image, calibrated focal px, person box) of the Human3.6M and MPI-INF-3DHP test frames."""
    data = root / "mmpose" / "tests" / "data"
    cams = pickle.load(open(data / "h36m" / "cameras.pkl", "rb"))
    d = np.load(data / "h36m" / "test_h36m_body3d.npz")
    for name, c, s in zip(d["imgname"], d["center"], d["scale"]):
        subject, cam = name.split("/")[0], name.split("/")[-1].split(".")[1].split("_")[0]
        s = 200.0 * s
        yield (name.split("/")[-1], cv2.imread(str(data / "h36m" / name)), float(np.mean(cams[(subject, cam)]["f"])),
               (c[0] - s / 2, c[1] - s / 2, s, s))
    for split, cams_file in (("test", "cameras_test.pkl"), ("train", "cameras_train.pkl")):
        cams = pickle.load(open(data / "mpi_inf_3dhp" / cams_file, "rb"))
        d = np.load(data / "mpi_inf_3dhp" / f"test_3dhp_{split}.npz")
        for name, c, s in zip(d["imgname"], d["center"], d["scale"]):
            base = name.split("/")[-1]
            s = 200.0 * s
            yield (base, cv2.imread(str(data / "mpi_inf_3dhp" / base)), float(np.mean(cams[base.rsplit("_", 1)[0]]["f"])),
                   (c[0] - s / 2, c[1] - s / 2, s, s))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "realdata")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--all-images", action="store_true")
    a = ap.parse_args()
    print("calibrated frames (person's box left out):")
    for name, img, f, box in calibrated(a.shared):
        e = frame_focal(img, [box])
        used = e.focal is not None and e.log_std <= MAX_LOG_F_STD
        got = f"{e.focal:7.0f} px ({100 * (e.focal / f - 1):+5.1f} %), std {e.log_std:.3f}" if used else "no estimate"
        print(f"  {name:45s} calibrated {f:7.1f}: {got}")
    print("clips (frames evenly spaced; focal/std, - = none):")
    for clip in CLIPS:
        cap = cv2.VideoCapture(str(a.shared / clip))
        n, W, H = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), int(cap.get(3)), int(cap.get(4))
        out = []
        for t in np.linspace(0, n - 1, a.frames).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(t))
            ok, img = cap.read()
            e = frame_focal(img) if ok else None
            out.append(f"{e.focal:.0f}/{e.log_std:.2f}" if e is not None and e.focal is not None
                       and e.log_std <= MAX_LOG_F_STD else "-")
        default = 0.5 * max(W, H) / math.tan(math.radians(30.0))
        print(f"  {Path(clip).name:40s} {W}x{H} (60 deg: {default:.0f} px): {' '.join(out)}")
    if a.all_images:
        paths = sorted(p for ext in ("*.jpg", "*.png") for p in a.shared.rglob(ext)
                       if "IUV" not in p.name and "derived" not in p.parts)
        measured, given = 0, []
        for p in paths:
            img = cv2.imread(str(p))
            if img is None or min(img.shape[:2]) < 200:
                continue
            measured += 1
            e = frame_focal(img)
            if e.focal is not None and e.log_std <= MAX_LOG_F_STD:
                fov = 2 * math.degrees(math.atan(0.5 * max(img.shape[:2]) / e.focal))
                given.append(f"  {p.relative_to(a.shared)}: {e.focal:.0f} px ({fov:.1f} deg), std {e.log_std:.3f}")
        print(f"all images: {measured} measured, an estimate on {len(given)}")
        print("\n".join(given))


if __name__ == "__main__":
    main()
