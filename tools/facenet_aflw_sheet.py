"""FaceNet's 68 points on the AFLW2000-3D images, one row per weights file (green: ground truth, red: FaceNet
on MediaPipe's face box, as ``eval aflw2000 --face net`` scores them; the NME in the corner):

    .venv/bin/python tools/facenet_aflw_sheet.py --dir ../shared/data/realdata/PRNet/TestImages/AFLW2000 \\
        --weights A.pt B.pt --labels shipped new --out docs/img/facenet_aflw.png [--profiles none default]

``--profiles``: per weights file, its profile expert (a ``.pt``, ``none``, or ``default``: the one beside it, if any).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TILE = 200


def main() -> None:
    import cv2
    import torch

    from model_runtime.detectors import make_detector
    from model_runtime.evals.aflw2000 import FaceEstimator, nme_percent, read_annotation
    from model_runtime.face.facenet import FaceNet
    from model_runtime.face.fit import FaceFitter
    from model_runtime.models.load import load_face_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--weights", type=Path, nargs="+", required=True)
    ap.add_argument("--labels", nargs="+", default=None)
    ap.add_argument("--profiles", nargs="+", default=None)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    labels = args.labels or [w.parent.name for w in args.weights]
    model = load_face_model()
    fitter = FaceFitter(model)
    profiles = args.profiles or ["default"] * len(args.weights)
    prof = lambda p: None if p == "default" else False if p == "none" else Path(p)  # noqa: E731
    ests = [FaceEstimator("net", fitter, FaceNet(model, weights=w, profile=prof(p))) for w, p in zip(args.weights, profiles)]
    det = make_detector("mediapipe")
    images = sorted(p for p in args.dir.glob("image*.jpg") if p.with_suffix(".mat").is_file())
    rows = [[] for _ in ests]
    try:
        for path in images:
            img = cv2.imread(str(path))
            gt, _ = read_annotation(path.with_suffix(".mat"))
            d = det.detect(img)
            lo, hi = gt.min(0), gt.max(0)
            c, s = (lo + hi) / 2, 1.6 * float(max(hi - lo))
            A = np.array([[TILE / s, 0, TILE / 2 - c[0] * TILE / s], [0, TILE / s, TILE / 2 - c[1] * TILE / s]])
            for row, est in zip(rows, ests):
                tile = cv2.warpAffine(img, A, (TILE, TILE))
                to = lambda p: [tuple(int(v) for v in np.round(q @ A[:, :2].T + A[:, 2])) for q in p]  # noqa: E731
                for q in to(gt):
                    cv2.circle(tile, q, 2, (0, 220, 0), -1, cv2.LINE_AA)
                if d.face_landmarks is not None:
                    pred = est(img, d.face_landmarks, d.face_box)
                    for q in to(pred):
                        cv2.circle(tile, q, 2, (0, 0, 255), -1, cv2.LINE_AA)
                    txt = f"{nme_percent(pred, gt):.1f} %"
                else:
                    txt = "no face"
                cv2.putText(tile, txt, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 2, cv2.LINE_AA)
                row.append(tile)
    finally:
        det.close()
    bands = []
    for label, row in zip(labels, rows):
        band = np.hstack(row)
        cv2.putText(band, label, (5, TILE - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 255, 255), 2, cv2.LINE_AA)
        bands.append(band)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(bands))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
