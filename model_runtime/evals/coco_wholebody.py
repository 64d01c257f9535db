"""``python -m model_runtime eval coco-wholebody``: 2D whole-body PCK on COCO-WholeBody (or Halpe) GT.

Top-down, as usual for single-person systems: every annotated person's box,
enlarged by 25 % about its centre (clipped to the image), is cropped and run
through the detector as a still image; its 133 COCO-WholeBody keypoints are
shifted back to image pixels and compared with the GT.

Metrics, per part (body 17, feet 6, face 68, left_hand 21, right_hand 21):

* ``pck@0.1`` / ``pck@0.2``: fraction of *labelled* GT keypoints (flag > 0)
  predicted within 0.1 / 0.2 x the longer side of the GT person box.  A
  keypoint the detector did not return (confidence 0) is an error.
* ``detection_rate``: fraction of persons with the part labelled for which the
  detector returned the part at all.

Output (``--json``)::

    {"pck@0.1": {part: v}, "pck@0.2": {part: v}, "detection_rate": {part: v}, "persons": n}

with fractions in [0, 1] (``null`` where no person has the part labelled).
Persons without any labelled keypoint are not evaluated; persons whose image
file is missing are skipped with a note on stderr (``persons`` counts the
persons actually evaluated).

GT formats (detected from the annotation): COCO-WholeBody v1.0 (``foot_kpts``,
``face_kpts``, ``lefthand_kpts``, ``righthand_kpts``) and Halpe-FullBody (136
``keypoints``: 0-16 body, 17-19 head/neck/hip (unused), 20-25 feet, 26-93 face,
94-114 left hand, 115-135 right hand).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

import numpy as np

from ..core.errors import InputMissingError, InputUnreadableError
from ..detectors import add_detector_arguments, detector_from_options
from .common import detection_rate, enlarged_box, load_json, note, pck, print_result, read_image

PARTS: Final[dict[str, slice]] = {
    "body": slice(0, 17), "feet": slice(17, 23), "face": slice(23, 91),
    "left_hand": slice(91, 112), "right_hand": slice(112, 133),
}
BOX_ENLARGE: Final[float] = 1.25
THRESHOLDS: Final[tuple[float, ...]] = (0.1, 0.2)

# Halpe-136 index for each COCO-WholeBody-133 keypoint.
HALPE_TO_WHOLEBODY: Final[np.ndarray] = np.concatenate([
    np.arange(17),                      # body
    [20, 22, 24, 21, 23, 25],           # l_big_toe, l_small_toe, l_heel, r_big_toe, r_small_toe, r_heel
    np.arange(26, 94),                  # face 68
    np.arange(94, 115),                 # left hand
    np.arange(115, 136),                # right hand
])
_WHOLEBODY_FIELDS: Final[tuple[tuple[str, int], ...]] = (
    ("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68), ("lefthand_kpts", 21), ("righthand_kpts", 21))


def annotation_keypoints(ann: dict, where: str) -> np.ndarray:
    """One annotation's GT as ``(133, 3)`` x, y, flag in COCO-WholeBody order.

    Accepts COCO-WholeBody (separate part fields) and Halpe (136 ``keypoints``).
    Raises InputUnreadableError naming ``where`` (file + annotation id) and the field.
    """
    def field(name: str, n: int) -> np.ndarray:
        if name not in ann:
            raise InputUnreadableError(f"{where}: field '{name}' is missing")
        arr = np.asarray(ann[name], dtype=np.float64)
        if arr.size != 3 * n:
            raise InputUnreadableError(f"{where}: field '{name}' has {arr.size} values, expected {3 * n}")
        return arr.reshape(n, 3)

    if "foot_kpts" in ann:
        return np.concatenate([field(name, n) for name, n in _WHOLEBODY_FIELDS])
    n = len(ann.get("keypoints", ()))
    if n == 136 * 3:
        return field("keypoints", 136)[HALPE_TO_WHOLEBODY]
    raise InputUnreadableError(
        f"{where}: neither COCO-WholeBody (no 'foot_kpts') nor Halpe-136 ('keypoints' has {n // 3} points)")


def load_persons(ann_path: Path, images_dir: Path) -> tuple[list[dict], int]:
    """Evaluable persons ``[{image, bbox (4,), gt (133, 3), id}]`` and the number skipped
    because their image file is missing."""
    data = load_json(ann_path)
    if not images_dir.is_dir():
        raise InputMissingError(f"{images_dir}: image folder not found")
    for key in ("images", "annotations"):
        if key not in data:
            raise InputUnreadableError(f"{ann_path}: field '{key}' is missing")
    files = {img["id"]: img["file_name"] for img in data["images"]}
    persons, missing_files, skipped = [], set(), 0
    for ann in data["annotations"]:
        where = f"{ann_path}: annotation {ann.get('id', '?')}"
        gt = annotation_keypoints(ann, where)
        if not (gt[:, 2] > 0).any():
            continue
        if ann.get("image_id") not in files:
            raise InputUnreadableError(f"{where}: image_id {ann.get('image_id')} is not in 'images'")
        image = images_dir / files[ann["image_id"]]
        if not image.is_file():
            missing_files.add(image.name)
            skipped += 1
            continue
        bbox = np.asarray(ann.get("bbox", ()), dtype=np.float64)
        if bbox.shape != (4,) or bbox[2] <= 0 or bbox[3] <= 0:
            raise InputUnreadableError(f"{where}: field 'bbox' must be [x, y, w, h] with w, h > 0")
        persons.append({"image": image, "bbox": bbox, "gt": gt, "id": ann.get("id")})
    if missing_files:
        note(f"note: {len(missing_files)} image file(s) missing in {images_dir}, {skipped} person(s) skipped")
    return persons, skipped


def predict_persons(detector, persons: list[dict]) -> np.ndarray:
    """Run the detector top-down on each person's enlarged box: ``(P, 133, 3)`` image px + conf."""
    preds = np.zeros((len(persons), 133, 3), np.float64)
    path, img = None, None          # persons come grouped by image: keep only the current one
    for i, person in enumerate(persons):
        if person["image"] != path:
            path, img = person["image"], read_image(person["image"])
        height, width = img.shape[:2]
        x0, y0, x1, y1 = enlarged_box(person["bbox"], BOX_ENLARGE, width, height)
        det = detector.detect(np.ascontiguousarray(img[y0:y1, x0:x1]))
        preds[i] = det.wholebody_2d
        preds[i, :, :2] += (x0, y0)
    return preds


def score(preds: np.ndarray, gts: np.ndarray, boxes: np.ndarray) -> dict:
    """Metrics dict (see module docstring) from ``(P, 133, 3)`` preds/GT and ``(P, 4)`` boxes."""
    norm = boxes[:, 2:].max(1)
    result: dict = {f"pck@{t}": {part: pck(preds[:, s], gts[:, s], norm, t) for part, s in PARTS.items()}
                    for t in THRESHOLDS}
    result["detection_rate"] = {part: detection_rate(preds[:, s], gts[:, s]) for part, s in PARTS.items()}
    result["persons"] = int(len(gts))
    return result


def evaluate(detector, ann_path: Path, images_dir: Path) -> dict:
    persons, _ = load_persons(ann_path, images_dir)
    if not persons:
        note(f"note: no evaluable person in {ann_path}")
        empty = np.zeros((0, 133, 3))
        return score(empty, empty, np.zeros((0, 4)))
    preds = predict_persons(detector, persons)
    return score(preds, np.stack([p["gt"] for p in persons]), np.stack([p["bbox"] for p in persons]))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ann", type=Path, required=True, help="COCO-WholeBody or Halpe annotation JSON")
    parser.add_argument("--images", type=Path, default=None, help="image folder (default: the JSON's folder)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_detector_arguments(parser)


def run(args: argparse.Namespace) -> int:
    images = args.images if args.images is not None else args.ann.parent
    detector = detector_from_options(args)
    try:
        result = evaluate(detector, args.ann, images)
    finally:
        detector.close()
    print_result(result, args.json)
    return 0
