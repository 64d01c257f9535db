"""Per-keypoint image error of captures: python tools/keypoint_errors.py CAPTURE.npz [...]

For each capture, the ``eval video`` body median, then each of the 24 body keypoints' median and mean
distance (px) between the posed model's projection and the detector's 2D point (confidence >= 0.5, valid
frames): where a change to the fit moved the body figure (docs/fidelity.md, session 14)."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import numpy as np

from model_runtime.core.capture_file import load_capture
from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES
from model_runtime.evals.render_avatar import project
from model_runtime.evals.video import CONFIDENCE, PosedCapture


def main() -> None:
    nb = len(BODY_KEYPOINT_NAMES)
    for f in sys.argv[1:]:
        cap = load_capture(f)
        px = project(PosedCapture(cap).keypoints, cap["camera_K"].astype(np.float64))
        kp = cap["keypoints_2d"].astype(np.float64)
        used = (kp[..., 2] >= CONFIDENCE) & cap["valid"][:, None]
        err = np.linalg.norm(px - kp[..., :2], axis=-1)
        print(f, "body median", round(float(np.median(err[:, :nb][used[:, :nb]])), 2))
        for j, n in enumerate(BODY_KEYPOINT_NAMES):
            e = err[:, j][used[:, j]]
            if e.size:
                print(f"  {n:16s} n={e.size:4d} median {np.median(e):6.2f} mean {e.mean():6.2f}")


if __name__ == "__main__":
    main()
