"""Record a detector's per-frame output on a clip, for replay in tests.

    python tools/record_detections.py samples/demo_clip.mp4 -o tests/data/demo_clip_detections.npz

Runs the real detector (default MediaPipe) in video mode with the timestamps the capture pipeline
uses (``round(time * 1000)``, strictly increasing) and stores every :class:`Detection` array
per frame: keypoints as float32, the 468 face landmarks and the COCO-WholeBody rows as float16
(to keep the file small; the landmarks as offsets from the face box so float16 keeps ~0.01 px).
Frames without a face have a NaN face box and zero landmarks.  ``ReplayDetector`` in
``tests/test_capture_orchestration.py`` replays such a file as a
:class:`~model_runtime.detectors.base.Detector`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def record(video: Path, detector_name: str = "mediapipe", end: int | None = None) -> dict[str, np.ndarray]:
    """-> the arrays of the recording file (see the module docstring)."""
    from model_runtime.capture.sources import open_source
    from model_runtime.detectors import make_detector

    rows: dict[str, list] = {k: [] for k in ("index", "time", "timestamp_ms", "person", "body_2d", "body_3d", "hands_2d",
                                              "hands_3d", "hands_conf", "face_box", "face_landmarks",
                                              "face_conf", "wholebody_2d")}
    det = make_detector(detector_name)
    try:
        with open_source(video, end=end) as src:
            size, fps, last_ts = src.image_size, src.fps, -1
            for frame in src:
                ts = max(int(round(frame.time * 1000.0)), last_ts + 1)     # as the capture's detect thread
                last_ts = ts
                d = det.detect(frame.image, timestamp_ms=ts)
                box = np.full(4, np.nan, np.float32) if d.face_box is None else np.asarray(d.face_box, np.float32)
                lm = np.zeros((468, 3), np.float32)
                if d.face_landmarks is not None:
                    lm = np.asarray(d.face_landmarks, np.float32) - np.r_[box[:2], 0.0].astype(np.float32)
                for k, v in (("index", frame.index), ("time", frame.time), ("timestamp_ms", ts), ("person", d.person),
                             ("body_2d", d.body_2d), ("body_3d", d.body_3d), ("hands_2d", d.hands_2d),
                             ("hands_3d", d.hands_3d), ("hands_conf", d.hands_conf), ("face_box", box),
                             ("face_landmarks", lm), ("face_conf", d.face_conf),
                             ("wholebody_2d", d.wholebody_2d)):
                    rows[k].append(v)
    finally:
        det.close()
    out = {k: np.asarray(v, np.float32) for k, v in rows.items()}
    out.update(index=np.asarray(rows["index"], np.int32), time=np.asarray(rows["time"], np.float64),
               timestamp_ms=np.asarray(rows["timestamp_ms"], np.int64),
               person=np.asarray(rows["person"], bool), face_landmarks=out["face_landmarks"].astype(np.float16),
               wholebody_2d=out["wholebody_2d"].astype(np.float16), image_size=np.asarray(size, np.int32),
               fps=np.float64(fps), detector=np.asarray(detector_name), source=np.asarray(video.name))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--detector", default="mediapipe")
    p.add_argument("--end", type=int, default=None, help="stop before this frame index")
    args = p.parse_args(argv)
    data = record(args.video, args.detector, args.end)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **data)
    n, faces = len(data["index"]), int(np.isfinite(data["face_box"][:, 0]).sum())
    print(f"{args.output}: {n} frames, person in {int(data['person'].sum())}, face in {faces}, "
          f"{args.output.stat().st_size / 1024:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
