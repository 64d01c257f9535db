"""``python -m model_runtime bench VIDEO [--frames N] [--detector D] --json``: MediaPipe alone vs the whole pipeline.

In one run, on the same frames of VIDEO:

1. **mediapipe**: decode + MediaPipe Holistic, one frame after the other (what
   running the legacy detector alone costs; the yardstick of issues 10 and 13 whatever ``--detector``);
2. **pipeline**: the full capture with ``--detector`` (decode, detect, IK, face fit, translation,
   filters, writing a capture file to a temporary folder), with its threads;
3. with a ``--detector`` other than mediapipe, **detector_alone**: decode + that detector, one run
   after the last MediaPipe run (what the pipeline costs on top of its own detector).

Each run uses a fresh detector, so all pay the detector's start-up.
Output (``--json``)::

    {"video", "frames", "device", "machine", "detector",
     "mediapipe": {"fps", "ms_per_frame", "cpu_ms_per_frame", "stages_ms": {"decode", "detect"}},
     "pipeline": {"fps", "ms_per_frame", "cpu_ms_per_frame", "fitting_thread_cpu_ms_per_frame",
                  "stages_ms": {"decode", "detect", "ik", "face", "filter", "write"}, "stages_cpu_ms": {...}},
     "ratio": pipeline fps / mediapipe fps,
     "detector_alone": {...as mediapipe} (other detectors only)}

``stages_ms`` are mean milliseconds per frame spent *in* each stage (stages
overlap across threads, so they do not add up to ``ms_per_frame``), ``stages_cpu_ms`` the CPU time
of the stage's thread in them (on a shared machine the wall time also counts waits for a core;
``detect``: the calling thread only, MediaPipe's own threads are in ``cpu_ms_per_frame``);
``cpu_ms_per_frame``: the whole process's CPU time per frame (all threads), for the pipeline
also ``fitting_thread_cpu_ms_per_frame`` (the fitting thread: IK, face tracker, post-processing,
writing);
``face_track`` is the per-frame expression/pose tracker, ``face`` is per
keyframe (albedo and lighting; ``face_fits`` counts them, see ``--face-every``).  The runs alternate (MediaPipe, pipeline, MediaPipe, ...,
``--repeat`` pipeline runs); ``ratio`` is the median over the pipeline runs of
its fps over the mean fps of the two MediaPipe runs around it (``ratios``), and
``pipeline`` is the run closest to it.  ``load_avg_1min`` records how busy the
machine was (before, and after each pair).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import EXIT_OK


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..core.options import add_arguments as add_capture_options

    p.add_argument("video", help="video file (or image folder) to benchmark on")
    p.add_argument("--frames", type=int, default=150, help="number of frames from --start (default 150)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (default: a short table)")
    p.add_argument("--repeat", type=int, default=2, help="pipeline runs, each between two MediaPipe runs (default 2)")
    add_capture_options(p)


def bench_detector(spec: str, options, detector: str = "mediapipe") -> dict[str, Any]:
    """Decode + ``detector`` sequentially; returns ``{fps, ms_per_frame, stages_ms, frames}``."""
    from dataclasses import replace

    from ..detectors import detector_from_options
    from ..capture.sources import open_source

    det = detector_from_options(replace(options, detector=detector))
    dec = detect = 0.0
    n = 0
    try:
        with open_source(spec, start=options.start, end=options.end, fps=options.folder_fps) as src:
            t_start, cpu_start = time.perf_counter(), time.process_time()
            it = iter(src)
            last_ts = -1
            while True:
                t0 = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                ts = max(int(round(frame.time * 1000.0)), last_ts + 1)
                last_ts = ts
                det.detect(frame.image, timestamp_ms=ts)
                t2 = time.perf_counter()
                dec += t1 - t0
                detect += t2 - t1
                n += 1
            wall = time.perf_counter() - t_start
            cpu = time.process_time() - cpu_start
    finally:
        det.close()
    return dict(frames=n, fps=n / wall, ms_per_frame=1000.0 * wall / n, cpu_ms_per_frame=1000.0 * cpu / n,
                stages_ms=dict(decode=1000.0 * dec / n, detect=1000.0 * detect / n))


def bench_pipeline(spec: str, options) -> dict[str, Any]:
    """The whole capture into a temporary file; returns ``{fps, ms_per_frame, stages_ms, frames}``."""
    from ..capture.pipeline import build_pipeline
    from ..capture.sources import open_source

    pipe = build_pipeline(options)
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                open_source(spec, start=options.start, end=options.end, fps=options.folder_fps) as src:
            cpu_start = time.process_time()
            res = pipe.run(src, Path(tmp) / "bench.npz")
            cpu, fit_cpu = time.process_time() - cpu_start, res.fitting_cpu_s
    finally:
        pipe.detector.close()
    return dict(frames=res.frames, fps=res.fps, ms_per_frame=1000.0 * res.wall_s / res.frames,
                cpu_ms_per_frame=1000.0 * cpu / res.frames, fitting_thread_cpu_ms_per_frame=1000.0 * fit_cpu / res.frames,
                stages_ms=res.stage_ms, stages_cpu_ms=res.stage_cpu_ms, valid_frames=res.valid_frames,
                face_fits=res.face_fits)


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), {gpu}"


def run(args: argparse.Namespace) -> int:
    from ..core.options import from_args as options_from_args

    args.end = args.start + args.frames if args.end is None else args.end
    options = options_from_args(args)
    # MediaPipe alone, pipeline, MediaPipe alone, pipeline, ..., MediaPipe alone: each pipeline run
    # is compared with the mean of the MediaPipe runs around it, and the median ratio is reported,
    # so a load change on a shared machine during the bench biases the result less.
    load = [os.getloadavg()[0]]
    mps = [bench_detector(args.video, options)]
    pls = []
    for _ in range(args.repeat):
        pls.append(bench_pipeline(args.video, options))
        mps.append(bench_detector(args.video, options))
        load.append(os.getloadavg()[0])
    alone = None
    if options.detector != "mediapipe":
        alone = bench_detector(args.video, options, options.detector)
        load.append(os.getloadavg()[0])
    ratios = [pl["fps"] / (0.5 * (a["fps"] + b["fps"])) for pl, a, b in zip(pls, mps[:-1], mps[1:])]
    ratio = float(np.median(ratios))
    best = int(np.argmin(np.abs(np.asarray(ratios) - ratio)))   # the run closest to the median
    pl = dict(pls[best], runs_fps=[p["fps"] for p in pls])
    mp = dict(frames=mps[0]["frames"], fps=float(np.mean([m["fps"] for m in mps])),
              runs_fps=[m["fps"] for m in mps],
              ms_per_frame=float(np.mean([m["ms_per_frame"] for m in mps])),
              cpu_ms_per_frame=float(np.mean([m["cpu_ms_per_frame"] for m in mps])),
              stages_ms={k: float(np.mean([m["stages_ms"][k] for m in mps])) for k in mps[0]["stages_ms"]})
    out = dict(video=str(args.video), frames=mp["frames"], start=options.start, device=options.resolved_device(),
               machine=machine(), detector=options.detector, load_avg_1min=load, mediapipe=mp, pipeline=pl,
               ratio=ratio, ratios=ratios)
    if alone is not None:
        out["detector_alone"] = alone
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{out['video']}: {out['frames']} frames on {out['machine']}")
        print(f"  mediapipe alone : {mp['fps']:6.1f} fps  ({mp['ms_per_frame']:.1f} ms/frame), runs "
              + ", ".join(f"{f:.1f}" for f in mp["runs_fps"]))
        if alone is not None:
            print(f"  {options.detector} alone : {alone['fps']:6.1f} fps  ({alone['ms_per_frame']:.1f} ms/frame)")
        print(f"  whole pipeline  : {pl['fps']:6.1f} fps  ({pl['ms_per_frame']:.1f} ms/frame), {options.detector}")
        print("  stages (ms/frame): " + ", ".join(f"{k} {v:.1f}" for k, v in pl["stages_ms"].items()))
        print("  stages CPU (ms/frame): " + ", ".join(f"{k} {v:.1f}" for k, v in pl["stages_cpu_ms"].items()))
        print(f"  CPU per frame   : mediapipe alone {mp['cpu_ms_per_frame']:.1f} ms, pipeline {pl['cpu_ms_per_frame']:.1f} ms "
              f"(fitting thread {pl['fitting_thread_cpu_ms_per_frame']:.1f})")
        print(f"  ratio           : {out['ratio']:.2f} (runs " + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    sys.stdout.flush()
    return EXIT_OK
