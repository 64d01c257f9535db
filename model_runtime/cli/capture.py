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
import signal
import sys
import threading
import time
from typing import TextIO

from ..core import options as O
from ..core.errors import EXIT_OK


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="video file, image folder, or camera index")
    p.add_argument("-o", "--output", required=True, help="output capture file (.npz)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (only when the run succeeds; a failed run never replaces it)")
    O.add_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


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


def terminate_as_interrupt() -> None:
    """SIGTERM (a process manager, ``kill``) stops the capture like Ctrl-C: finished frames are kept."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    from ..core.capture_file import check_output
    from ..capture.pipeline import build_pipeline
    from ..capture.sources import open_source

    options = O.from_args(args)                          # usage errors (exit 2) before anything loads
    out = check_output(args.output, overwrite=args.overwrite)   # output problems (exit 9) too
    source = open_source(args.source, start=options.start, end=options.end, fps=options.folder_fps)
    terminate_as_interrupt()
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
