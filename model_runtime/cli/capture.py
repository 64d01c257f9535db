"""``python -m model_runtime capture SOURCE -o OUT.npz``: capture a video, image folder or camera.

SOURCE is a video file, a folder of images, or a camera index (``0``).
A progress bar goes to stderr; the capture file is written incrementally, so
Ctrl-C, SIGTERM or any error keeps every finished frame (in OUT.npz when no
capture is there yet, else next to it; a failed run never replaces a capture).
Options and the output path are checked before any model loads.  Exit codes
are those of :mod:`model_runtime.core.errors` (2 usage, 3 missing input, 4
unreadable input, 6 no person, 7 source lost, 8 cancelled, 9 output not
writable or existing).
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from ..core import options
from ..core.errors import EXIT_OK
from .main import sigterm_as_interrupt


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="video file, image folder, or camera index")
    p.add_argument("-o", "--output", required=True, help="output capture file (.npz)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (only when the run succeeds; a failed run never replaces it)")
    options.add_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


class _Lines:
    """A stream for tqdm that is not a terminal (a log file, a pipe): each redraw becomes one line
    instead of ``\\r``-separated redraws piling up on a single line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class ProgressBar:
    """The pipeline's ``on_progress(done, total, fps)`` drawn by tqdm on ``stream``: redrawn in place
    on a terminal (at most every 0.2 s), else one line every ``log_interval`` s.  The bar starts at
    the first frame, so model loading does not count in its rate and ETA."""

    def __init__(self, stream: TextIO = sys.stderr, log_interval: float = 5.0):
        self.stream, self.log_interval = stream, log_interval
        self.bar = None

    def __call__(self, done: int, total: int | None, fps: float) -> None:
        from tqdm import tqdm

        if self.bar is None:
            tty = self.stream.isatty()
            self.bar = tqdm(total=total, unit="frame", file=self.stream if tty else _Lines(self.stream),
                            mininterval=0.2 if tty else self.log_interval, ascii=not tty, dynamic_ncols=tty,
                            bar_format=None if total else "{n_fmt} frames [{elapsed}, {rate_fmt}]")
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from ..core.capture_file import check_output

    opts = options.from_args(args)                             # usage errors (exit 2) before anything loads
    out = check_output(args.output, overwrite=args.overwrite)   # output problems (exit 9) too
    from ..capture.pipeline import build_pipeline             # torch, cv2, mediapipe: only now
    from ..capture.sources import open_source

    source = open_source(args.source, start=opts.start, end=opts.end, fps=opts.folder_fps)
    sigterm_as_interrupt()
    bar = None if args.quiet else ProgressBar()
    try:
        pipe = build_pipeline(opts)
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
    if result.output is not None:
        from ..core.camera_source import describe_camera
        from ..core.capture_file import load_capture

        cap = load_capture(result.output)
        print(f"camera: {describe_camera(cap['camera_K'], cap['image_size'], str(cap['camera_source']))}",
              file=sys.stderr)
    return EXIT_OK
