"""``python -m model_runtime capture SOURCE -o OUT.npz``: capture a video, image folder or camera.

SOURCE is a video file, a folder of images, or a camera index (``0``).
A progress bar goes to stderr; the capture file is written incrementally, so
Ctrl-C (or any error) keeps every finished frame in OUT.npz.  Exit codes are
those of :mod:`model_runtime.errors` (3 missing input, 4 unreadable input,
6 no person, 7 source lost, 8 cancelled).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from ..errors import EXIT_OK, EXIT_USAGE
from .detector import DETECTOR_NAMES
from .filters import FILL_MODES, SmoothingConfig
from .translation import DEFAULT_FOV_DEG


def add_capture_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``capture`` and ``bench`` (everything but source/output)."""
    p.add_argument("--start", type=int, default=0, help="first frame index (default 0)")
    p.add_argument("--end", type=int, default=None, help="stop before this frame index (default: the end)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="torch device for IK and face fitting (default auto: CUDA if available)")
    p.add_argument("--detector", default="mediapipe", choices=DETECTOR_NAMES, help="keypoint detector")
    p.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2),
                   help="MediaPipe pose model complexity (only 1 ships with the wheel)")
    p.add_argument("--body-model", default="builtin", help="'builtin' or an official SMPL-H .npz/.pkl")
    p.add_argument("--face-model", default="builtin", help="'builtin' or a Basel face model file")
    cam = p.add_mutually_exclusive_group()
    cam.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG,
                     help=f"camera field of view in degrees across the longer image side (default {DEFAULT_FOV_DEG:g})")
    cam.add_argument("--calibration", default=None,
                     help="camera calibration file (.json with K or fx/fy/cx/cy, OpenCV .yml/.xml, .npz)")
    p.add_argument("--fill", default="interpolate", choices=FILL_MODES,
                   help="frames without a person: hold the last pose or interpolate (default)")
    d = SmoothingConfig()
    p.add_argument("--min-cutoff", type=float, default=d.min_cutoff,
                   help=f"One Euro min cutoff Hz (default {d.min_cutoff})")
    p.add_argument("--beta", type=float, default=d.beta, help=f"One Euro speed coefficient (default {d.beta})")
    p.add_argument("--no-smoothing", action="store_true", help="disable the One Euro filter")
    p.add_argument("--no-hands", action="store_true", help="skip hand IK (fingers stay at rest)")
    p.add_argument("--no-face", action="store_true", help="skip face fitting")
    p.add_argument("--face-every", type=int, default=0,
                   help="face keyframes (albedo and lighting) on every N-th face frame; 0 (default) = "
                        "adaptive, about every 5 s; expressions and head pose are tracked on every frame")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of an image folder (default 30)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="video file, image folder, or camera index")
    p.add_argument("-o", "--output", required=True, help="output capture file (.npz)")
    add_capture_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace):
    from .pipeline import CaptureOptions

    return CaptureOptions(
        start=args.start, end=args.end, device=args.device, detector=args.detector,
        model_complexity=args.model_complexity, body_model=args.body_model, face_model=args.face_model,
        fov=args.fov, calibration=args.calibration, fill=args.fill,
        smoothing=SmoothingConfig(min_cutoff=args.min_cutoff, beta=args.beta, enabled=not args.no_smoothing),
        hands=not args.no_hands, face=not args.no_face, face_every=args.face_every, folder_fps=args.fps,
    )


class ProgressBar:
    """A one-line progress bar on a stream (redrawn at most every ``interval`` s).

    On a terminal it redraws in place; otherwise it prints a line every 5 s.
    """

    def __init__(self, stream: TextIO = sys.stderr, width: int = 30, interval: float = 0.2):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.interval = interval if self.tty else 5.0
        self._last = 0.0

    def __call__(self, done: int, total: int | None, fps: float) -> None:
        now = time.monotonic()
        if now - self._last < self.interval and (total is None or done < total):
            return
        self._last = now
        if total:
            filled = int(self.width * done / total)
            eta = (total - done) / fps if fps > 0 else float("nan")
            line = (f"[{'#' * filled}{'-' * (self.width - filled)}] {done}/{total} frames "
                    f"{fps:5.1f} fps  ETA {eta:4.0f} s")
        else:
            line = f"{done} frames {fps:5.1f} fps"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from .pipeline import build_pipeline
    from .sources import open_source

    options = options_from_args(args)
    out = Path(args.output)
    if out.suffix.lower() != ".npz":
        print(f"error: output {out} must end in .npz", file=sys.stderr)
        return EXIT_USAGE
    out.parent.mkdir(parents=True, exist_ok=True)
    source = open_source(args.source, start=options.start, end=options.end, fps=options.folder_fps)
    bar = None if args.quiet else ProgressBar()
    try:
        pipe = build_pipeline(options)
        try:
            result = pipe.run(source, out, on_progress=bar)
        finally:
            pipe.detector.close()
    finally:
        source.close()
        if bar is not None:
            bar.close()
    print(f"wrote {result.output}: {result.frames} frames ({result.valid_frames} with a person) in "
          f"{result.wall_s:.1f} s, {result.fps:.1f} fps", file=sys.stderr)
    return EXIT_OK
