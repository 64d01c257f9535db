"""Teacher labels: MediaPipe Holistic run once over held-in real frames, cached under ``out/``.

``python -m model_runtime train detnet --make-teacher`` calls :func:`make_teacher_cache`.  It reads
the held-in videos and body images of ``../shared/data/realdata`` (never the evaluation sets:
COCO-WholeBody, H36M, MPI-INF-3DHP, hand-graph-cnn), keeps every ``every``-th video frame,
downsizes it to ``max_side`` px and stores, per frame where MediaPipe found a person:

* ``images/NNNNNN.jpg`` (the downsized frame, BGR JPEG);
* in ``labels.npz``: ``body_2d (F, 24, 3)`` px + confidence, ``body_3d (F, 24, 3)`` metres,
  ``hands_2d (F, 2, 21, 3)``, ``hands_3d (F, 2, 21, 3)``, ``face_68 (F, 68, 3)`` (iBUG-68 from
  the face mesh), ``source`` (F,) the frame's origin.

The cache is research material derived from non-commercial data: it lives under ``out/`` (git
ignored) and is never shipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Final, Iterator

import numpy as np

from ...core.errors import InputMissingError

VIDEOS: Final[tuple[str, ...]] = (
    "openpose/examples/media/video.avi", "ROMP/demo/videos/sample_video.mp4",
    "GVHMR/docs/example_video/tennis.mp4", "mmhuman3d/demo/resources/single_person_demo.mp4",
    "SadTalker/examples/ref_video/WDA_AlexandriaOcasioCortez_000.mp4", "MimicMotion/assets/comparisons/raw_0.mp4",
    "MimicMotion/assets/comparisons/raw_5.mp4", "LivePortrait/assets/examples/source/s20.mp4",
    "LivePortrait/assets/examples/driving/d0.mp4", "LivePortrait/assets/examples/driving/d3.mp4",
    "mmpose/demo/resources/demo.mp4",
)
"""Held-in videos (relative to the realdata root) that are used when present."""
IMAGE_DIRS: Final[tuple[str, ...]] = (
    "openpose/examples/media", "ROMP/demo/images", "AlphaPose/examples/demo", "PIXIE/TestSamples/body",
    "PIXIE/TestSamples/animation", "mmpose/tests/data/mpii", "mmpose/tests/data/crowdpose",
    "mmpose/tests/data/ochuman", "mmpose/tests/data/aic", "mmpose/tests/data/jhmdb", "mmpose/tests/data/mhp",
    "mmpose/tests/data/posetrack18", "mmpose/tests/data/humanart", "mmpose/tests/data/exlpose",
)
"""Held-in image folders (searched recursively for .jpg/.png)."""


def iter_frames(root: Path, every: int) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(source, image_bgr)``: every ``every``-th frame of :data:`VIDEOS`, then all images."""
    import cv2

    for rel in VIDEOS:
        path = root / rel
        if not path.is_file():
            continue
        cap = cv2.VideoCapture(str(path))
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                yield f"{rel}#{i}", frame
            i += 1
        cap.release()
    for rel in IMAGE_DIRS:
        folder = root / rel
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                img = cv2.imread(str(path))
                if img is not None:
                    yield str(path.relative_to(root)), img


def make_teacher_cache(root: Path, out_dir: Path, every: int = 2, max_side: int = 512,
                       log: Callable[[str], None] = print) -> int:
    """Label held-in frames with MediaPipe Holistic (static image mode) and write the cache.

    Returns the number of frames kept (MediaPipe found a person).
    """
    import cv2

    from ..mediapipe import MediaPipeDetector

    if not root.is_dir():
        raise InputMissingError(f"{root}: realdata folder not found")
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {k: [] for k in ("body_2d", "body_3d", "hands_2d", "hands_3d", "face_68", "source")}
    seen = 0
    with MediaPipeDetector() as det:
        for source, img in iter_frames(root, every):
            seen += 1
            s = min(1.0, max_side / max(img.shape[:2]))
            if s < 1.0:
                img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
            d = det.detect(img)
            if not d.person:
                continue
            cv2.imwrite(str(out_dir / "images" / f"{len(rows['source']):06d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            rows["body_2d"].append(d.body_2d)
            rows["body_3d"].append(d.body_3d)
            rows["hands_2d"].append(d.hands_2d)
            rows["hands_3d"].append(d.hands_3d)
            rows["face_68"].append(d.wholebody_2d[23:91])
            rows["source"].append(source)
            if seen % 100 == 0:
                log(f"teacher: {seen} frames read, {len(rows['source'])} with a person")
    arrays = {k: (np.array(v) if k == "source" else np.stack(v).astype(np.float32)) for k, v in rows.items()} \
        if rows["source"] else {}
    np.savez(out_dir / "labels.npz", **arrays)
    log(f"teacher: {len(rows['source'])} of {seen} frames kept -> {out_dir}")
    return len(rows["source"])
