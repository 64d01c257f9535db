"""``python -m model_runtime eval hand3d``: 3D hand keypoint error on the hand-graph-cnn layout.

Layout of ``--dir`` (the hand-graph-cnn "real-world test set"):

* ``params.mat``: ``image_path`` (N,) relative to the folder (``images/00000.jpg``), ...
* ``pose_gt.mat``: ``pose_gt`` (N, 21, 3) camera-space joints in **cm**, order wrist,
  thumb1..4, index1..4, middle1..4, ring1..4, pinky1..4 (= ``skeleton.HAND21_NAMES``).

Each image is a hand-only crop, so the detector's hand-only path is used
(:meth:`Detector.detect_hand`; for MediaPipe that is MediaPipe Hands, because
Holistic needs a body).  Predicted and GT keypoints are compared in camera
space with the wrist at the origin, without mirroring: the GT has left-hand
chirality in camera space and so has the prediction (MediaPipe classifies these
hands as the left one once its selfie-mirrored label is swapped).

Metrics over the detected images (misses only lower ``detection_rate``):

* ``mpjpe_mm``: mean wrist-aligned joint error, mm (absolute scale matters: the
  detector's metric scale comes from an assumed hand size, see
  :data:`model_runtime.detectors.mediapipe.HAND_PALM_LENGTH_M`);
* ``pa_mpjpe_mm``: after a per-image similarity (Procrustes) alignment, mm;
* ``detection_rate``: detected images / evaluated images; ``images``: evaluated images.

``--hand-3d world`` scores MediaPipe's own metric world landmarks instead (a
comparison only; the capture pipeline uses the scaled keypoints).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.errors import InputMissingError, InputUnreadableError
from ..core.options import int_at_least
from ..detectors import add_detector_arguments, detector_from_options
from .common import mean_or_none, mpjpe, note, print_result, procrustes_align, read_image

GT_SIDE = "left"   # chirality of the GT in camera space (see module docstring)


def load_testset(folder: Path, limit: int | None = None, start: int = 0) -> tuple[list[Path], np.ndarray]:
    """Image paths and ``(N, 21, 3)`` GT in mm; raises naming the file/field on bad input."""
    from scipy.io import loadmat

    if not folder.is_dir():
        raise InputMissingError(f"{folder}: test-set folder not found")
    mats = {}
    for name in ("params.mat", "pose_gt.mat"):
        path = folder / name
        if not path.is_file():
            raise InputMissingError(f"{path}: file not found")
        try:
            mats[name] = loadmat(str(path))
        except Exception as e:  # scipy raises several types for corrupt/v7.3 files
            raise InputUnreadableError(f"{path}: cannot read MATLAB file ({e})") from e
    if "image_path" not in mats["params.mat"]:
        raise InputUnreadableError(f"{folder / 'params.mat'}: field 'image_path' is missing")
    if "pose_gt" not in mats["pose_gt.mat"]:
        raise InputUnreadableError(f"{folder / 'pose_gt.mat'}: field 'pose_gt' is missing")
    paths = [folder / str(p).strip() for p in np.ravel(mats["params.mat"]["image_path"])]
    gt = np.asarray(mats["pose_gt.mat"]["pose_gt"], np.float64)
    if gt.ndim != 3 or gt.shape[1:] != (21, 3) or len(gt) != len(paths):
        raise InputUnreadableError(
            f"{folder / 'pose_gt.mat'}: field 'pose_gt' has shape {gt.shape}, expected ({len(paths)}, 21, 3)")
    paths, gt = paths[start:], gt[start:]
    if limit is not None:
        paths, gt = paths[:limit], gt[:limit]
    return paths, gt * 10.0   # cm -> mm


def evaluate(detector, folder: Path, limit: int | None = None, hand_3d: str = "scaled", start: int = 0) -> dict:
    paths, gt = load_testset(folder, limit, start)
    preds = np.zeros_like(gt)
    found = np.zeros(len(paths), bool)
    sides = []
    for i, path in enumerate(paths):
        hand = detector.detect_hand(read_image(path), side_hint=GT_SIDE)
        if hand is None:
            continue
        found[i] = True
        sides.append(hand.side)
        if hand_3d == "world" and "world_3d" not in hand.extras:
            raise ValueError(f"--hand-3d world: detector '{detector.name}' gives no world landmarks")
        kp = hand.extras["world_3d"] if hand_3d == "world" else hand.keypoints_3d
        preds[i] = np.asarray(kp, np.float64) * 1000.0
    if sides:
        other = sum(s != GT_SIDE for s in sides)
        if other:
            note(f"note: {other} of {len(sides)} detected hands were classified as the {'right' if GT_SIDE == 'left' else 'left'} hand")
    pred, ref = preds[found], gt[found] - gt[found][:, :1]
    pred = pred - pred[:, :1]
    return {
        "mpjpe_mm": mean_or_none(mpjpe(pred, ref)),
        "pa_mpjpe_mm": mean_or_none(mpjpe(procrustes_align(pred, ref), ref)) if len(pred) else None,
        "detection_rate": float(found.mean()) if len(found) else None,
        "images": len(paths),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, required=True,
                        help="folder with images/, params.mat, pose_gt.mat (hand-graph-cnn layout)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--limit", type=int_at_least(1), default=None, help="evaluate only the first N images")
    parser.add_argument("--start", type=int_at_least(0), default=0,
                        help="skip the first N images (DetNet trains on hand-graph-cnn 0-199: use --start 200)")
    parser.add_argument("--hand-3d", choices=("scaled", "world"), default="scaled",
                        help="3D keypoints to score: the detector's (scaled, default) or MediaPipe's world landmarks")
    add_detector_arguments(parser)


def run(args: argparse.Namespace) -> int:
    detector = detector_from_options(args)
    try:
        result = evaluate(detector, args.dir, args.limit, args.hand_3d, args.start)
    finally:
        detector.close()
    print_result(result, args.json)
    return 0
