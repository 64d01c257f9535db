"""Shared pieces of the keypoint evaluations: metrics, crops, output.

All metric functions are vectorised over persons/images and keypoints.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from ..core.errors import InputMissingError, InputUnreadableError
from ..geometry import alignment


# ----------------------------------------------------------------------------- 2D metrics
def pck_hits(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, threshold: float) -> np.ndarray:
    """Which labelled keypoints are correct at ``threshold`` x ``norm``.

    Args:
        pred: ``(P, K, 3)`` predicted x, y px + confidence (confidence 0 = missed).
        gt: ``(P, K, 3)`` ground-truth x, y px + visibility flag (> 0 = labelled).
        norm: ``(P,)`` per-person normaliser in px (e.g. the longer side of the box).
        threshold: fraction of ``norm``.
    Returns:
        ``(P, K)`` bool, True where the keypoint is labelled, predicted (confidence > 0)
        and within the radius.  Misses are errors: use :func:`pck` to divide by the
        number of *labelled* keypoints.
    """
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    return (gt[..., 2] > 0) & (pred[..., 2] > 0) & (dist <= threshold * np.asarray(norm)[:, None])


def pck(pred: np.ndarray, gt: np.ndarray, norm: np.ndarray, threshold: float) -> float | None:
    """Fraction of labelled keypoints that are correct (shapes as in :func:`pck_hits`);
    None when nothing is labelled."""
    labelled = int((gt[..., 2] > 0).sum())
    if labelled == 0:
        return None
    return float(pck_hits(pred, gt, norm, threshold).sum()) / labelled


def detection_rate(pred: np.ndarray, gt: np.ndarray) -> float | None:
    """Fraction of persons with the part labelled (any GT flag > 0) for which the detector
    returned the part (any confidence > 0).  Shapes ``(P, K, 3)``; None if no person has it."""
    labelled = (gt[..., 2] > 0).any(-1)
    if not labelled.any():
        return None
    found = (pred[..., 2] > 0).any(-1)
    return float((found & labelled).sum()) / float(labelled.sum())


# ----------------------------------------------------------------------------- 3D metrics
def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity-align ``pred`` to ``gt`` (rotation, uniform scale, translation), batched.

    Args:
        pred, gt: ``(N, K, 3)``.
    Returns:
        ``(N, K, 3)`` aligned ``pred`` (:func:`model_runtime.geometry.alignment.fit_similarity`,
        Umeyama 1991; a reflection is never used).
    """
    return alignment.fit_similarity(pred, gt).apply(pred)


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-sample mean joint distance, ``(N, K, 3) x (N, K, 3) -> (N,)`` (input units)."""
    return np.linalg.norm(pred - gt, axis=-1).mean(-1)


# ----------------------------------------------------------------------------- crops
def enlarged_box(box_xywh: np.ndarray, factor: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Scale an ``[x, y, w, h]`` box about its centre by ``factor`` and clip it to the image.

    Returns integer ``(x0, y0, x1, y1)`` with ``0 <= x0 < x1 <= width`` (same for y).
    """
    x, y, w, h = (float(v) for v in box_xywh)
    cx, cy = x + w / 2, y + h / 2
    hw, hh = w * factor / 2, h * factor / 2
    x0, y0 = max(int(np.floor(cx - hw)), 0), max(int(np.floor(cy - hh)), 0)
    x1, y1 = min(int(np.ceil(cx + hw)), width), min(int(np.ceil(cy + hh)), height)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def read_image(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 BGR; raises InputMissingError / InputUnreadableError naming the file."""
    import cv2

    if not path.is_file():
        raise InputMissingError(f"{path}: image file not found")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InputUnreadableError(f"{path}: cannot decode image")
    return img


def load_json(path: Path) -> dict:
    if not path.is_file():
        raise InputMissingError(f"{path}: annotation file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputUnreadableError(f"{path}: not valid JSON ({e})") from e


# ----------------------------------------------------------------------------- output
def note(msg: str) -> None:
    """A progress/diagnostic line on stderr (stdout is reserved for the result)."""
    print(msg, file=sys.stderr, flush=True)


def print_result(result: Mapping, as_json: bool) -> None:
    """Print ``result`` as one JSON object, or as an aligned ``key: value`` table."""
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=False))
        return
    for key, value in result.items():
        if isinstance(value, Mapping):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k:<12} {_fmt(v)}")
        else:
            print(f"{key:<14} {_fmt(value)}")


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def mean_or_none(values: Iterable[float]) -> float | None:
    arr = np.asarray(list(values), dtype=np.float64)
    return float(arr.mean()) if arr.size else None
