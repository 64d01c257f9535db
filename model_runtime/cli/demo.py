"""``python -m model_runtime demo``: the main job on the built-in default.

Captures the shipped sample clip (``samples/demo_clip.mp4``, rendered by this
project from the built-in avatar and HDM05 MoCap) into ``OUT/capture.npz``,
then, in Blender (``bpy`` as a module, or a real Blender given by
``--blender``), builds the avatar, imports the capture as keyframes and writes
``OUT/capture.blend`` and ``OUT/capture.fbx``.  Finally it scores the capture
against the clip's ground truth (``eval capture-gt``) and prints a summary.

Each step is a separate process, exactly as a user would run it: this module
never imports bpy.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from ..core.errors import EXIT_INTERNAL, InputMissingError
from ..core.options import DEVICES, CaptureOptions

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "demo_clip.mp4"
SAMPLE_GT = REPO / "samples" / "demo_clip_gt.npz"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--clip", default=str(SAMPLE), help="video to capture (default: the shipped sample)")
    p.add_argument("--device", default=CaptureOptions().device, choices=DEVICES)
    p.add_argument("--preset", default="BLENDER", choices=("BLENDER", "UNITY", "UNREAL"), help="FBX target")
    p.add_argument("--blender", default=None,
                   help="a Blender executable for the .blend/.fbx step (default: this Python's bpy module)")


def _step(name: str, argv: list[str]) -> float:
    print(f"[demo] {name}: {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(argv)
    if r.returncode != 0:
        raise SystemExit(f"[demo] {name} failed with exit code {r.returncode}")
    return time.perf_counter() - t0


def run(args) -> int:
    clip = Path(args.clip)
    if not clip.is_file():
        raise InputMissingError(f"{clip}: sample clip not found")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cap, blend, fbx = out / "capture.npz", out / "capture.blend", out / "capture.fbx"
    py = sys.executable
    try:
        t_cap = _step("capture", [py, "-m", "model_runtime", "capture", str(clip), "-o", str(cap),
                                  "--device", args.device, "--overwrite"])
        headless = ["-m", "fullbody_addon.headless", str(cap), "--blend", str(blend), "--fbx", str(fbx),
                    "--preset", args.preset]
        if args.blender:
            expr = ("import sys, runpy; sys.path.insert(0, %r); sys.argv = ['headless'] + %r; "
                    "runpy.run_module('fullbody_addon.headless', run_name='__main__')") % (str(REPO), headless[2:])
            t_bl = _step("blender", [args.blender, "-b", "--factory-startup", "--python-expr", expr])
        else:
            t_bl = _step("blender", [py, *headless])
    except SystemExit as e:
        print(e, file=sys.stderr)
        return EXIT_INTERNAL
    summary = {"capture": str(cap), "blend": str(blend), "fbx": str(fbx),
               "seconds": {"capture": round(t_cap, 1), "blender": round(t_bl, 1)}}
    if clip.resolve() == SAMPLE.resolve() and SAMPLE_GT.is_file():
        from ..evals.capture_gt import score

        summary["accuracy_vs_ground_truth"] = score(cap, SAMPLE_GT)
    print(json.dumps(summary, indent=2))
    return 0
