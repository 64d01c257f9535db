"""``python -m model_runtime eval body3d``: root-relative 3D body error of the detector on real images.

Data (mmpose ``tests/data`` layout, see ``../shared/data/realdata/SOURCES.md`` 1c):

* ``h36m/test_h36m_body3d.npz``: 4 Human3.6M frames, ``S`` (4, 17, 4) camera metres
  + validity, H36M-17 order, images under ``h36m/``;
* ``mpi_inf_3dhp/test_3dhp_{test,train}.npz``: 2 + 2 MPI-INF-3DHP frames, ``S``
  (N, 17, 4), 3DHP-17 order, images next to the files.

The detector's ``body_3d`` (pelvis-relative metres, camera-aligned axes) is
compared with the GT on the 13 joints both define as joints (pelvis, hips,
knees, ankles, shoulders, elbows, wrists) after aligning the pelvis:

* ``mpjpe_mm``: root-relative mean joint error;
* ``pa_mpjpe_mm``: after a per-image similarity (Procrustes) alignment;
* per dataset (``h36m``, ``3dhp``) and overall; ``detected``/``images``.

Dataset joints are not SMPL-H joints (H36M hips are wider, 3DHP's pelvis is
lower), so this is a cheap real-image check of the body keypoint mapping, not
a benchmark.  ``--body-map handset`` scores the uncalibrated map for comparison.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.errors import InputMissingError, InputUnreadableError
from ..core.skeleton import BODY_KEYPOINT_NAMES
from ..detectors import add_detector_arguments, detector_from_options
from .common import mean_or_none, mpjpe, print_result, procrustes_align, read_image

DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared/data/realdata/mmpose/tests/data"
SHARED_JOINTS = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
                 "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist")
# GT index of each SHARED_JOINTS entry per dataset order
_GT_INDEX = {
    "h36m": (0, 4, 1, 5, 2, 6, 3, 11, 14, 12, 15, 13, 16),
    "3dhp": (14, 11, 8, 12, 9, 13, 10, 5, 2, 6, 3, 7, 4),
}
_FILES = (("h36m", "h36m/test_h36m_body3d.npz", "h36m"),
          ("3dhp", "mpi_inf_3dhp/test_3dhp_test.npz", "mpi_inf_3dhp"),
          ("3dhp", "mpi_inf_3dhp/test_3dhp_train.npz", "mpi_inf_3dhp"))


def load_frames(root: Path) -> list[tuple[str, Path, np.ndarray]]:
    """``[(dataset, image path, (13, 3) GT metres camera frame)]``; raises naming the bad file/field."""
    frames = []
    for dataset, rel, image_dir in _FILES:
        path = root / rel
        if not path.is_file():
            raise InputMissingError(f"{path}: file not found (--root should be mmpose's tests/data)")
        with np.load(path) as z:
            for field in ("imgname", "S"):
                if field not in z.files:
                    raise InputUnreadableError(f"{path}: field '{field}' is missing")
            names, S = z["imgname"], z["S"]
        if S.ndim != 3 or S.shape[1:] != (17, 4) or len(S) != len(names):
            raise InputUnreadableError(f"{path}: field 'S' has shape {S.shape}, expected ({len(names)}, 17, 4)")
        for name, s in zip(names, S):
            frames.append((dataset, root / image_dir / str(name), s[list(_GT_INDEX[dataset]), :3].astype(np.float64)))
    return frames


def evaluate(detector, root: Path) -> dict:
    frames = load_frames(root)
    kp = [BODY_KEYPOINT_NAMES.index(n) for n in SHARED_JOINTS]
    preds, gts, sets = [], [], []
    for dataset, image, gt in frames:
        det = detector.detect(read_image(image))
        if not det.person:
            continue
        preds.append(np.asarray(det.body_3d, np.float64)[kp])
        gts.append(gt - gt[:1])
        sets.append(dataset)
    result: dict = {"images": len(frames), "detected": len(preds)}
    if not preds:
        return result | {"mpjpe_mm": None, "pa_mpjpe_mm": None}
    pred, gt, sets = np.stack(preds), np.stack(gts), np.array(sets)
    pred = pred - pred[:, :1]
    err = mpjpe(pred, gt) * 1000.0                                   # (N,)
    pa = mpjpe(procrustes_align(pred, gt), gt) * 1000.0              # (N,)
    result |= {"mpjpe_mm": float(err.mean()), "pa_mpjpe_mm": float(pa.mean())}
    for name in _GT_INDEX:
        m = sets == name
        result[f"{name}_mpjpe_mm"] = mean_or_none(err[m])
        result[f"{name}_pa_mpjpe_mm"] = mean_or_none(pa[m])
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="mmpose tests/data folder with h36m/ and mpi_inf_3dhp/ (default: ../shared copy)")
    parser.add_argument("--body-map", choices=("calibrated", "handset"), default="calibrated",
                        help="MediaPipe landmark -> body keypoint map (default: the calibrated asset)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_detector_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..detectors.mediapipe import BodyMap, MediaPipeDetector

    if args.detector == "mediapipe":
        body_map = BodyMap.handset() if args.body_map == "handset" else None
        detector = MediaPipeDetector(body_map=body_map, model_complexity=args.model_complexity)
    else:   # --body-map is MediaPipe's
        detector = detector_from_options(args)
    try:
        result = evaluate(detector, args.root)
    finally:
        detector.close()
    print_result(result, args.json)
    return 0
