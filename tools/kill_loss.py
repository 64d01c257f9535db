"""How many frames a hard kill (SIGKILL) of the runtime loses: ``docs/reliability.md``.

Runs the real ``model_runtime serve`` on a clip, kills it with SIGKILL when its ``progress``
events report ``K`` frames done (several K), recovers the capture and prints, per kill, the
frames reported done, the frames recovered, and whether the per-clip values (betas, scale,
face identity) survived, and the feet stage's output (contact labels, ground plane) that was on
disk.  "Lost" = reported done - recovered (the frames an animator saw counted in the panel but does
not get back).  The feet stage is on unless ``--no-feet``.

    .venv/bin/python tools/kill_loss.py samples/demo_clip.mp4 --at 35 45 55 65 75
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model_runtime.core import protocol as P  # noqa: E402
from model_runtime.core.capture_file import load_capture  # noqa: E402


def one_kill(video: str, at: int, out: Path, face: bool, feet: bool = True) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "model_runtime", "serve", "--log-level", "WARNING"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    reported = 0
    try:
        events = iter(proc.stdout.readline, b"")
        P.decode(next(events))
        proc.stdin.write(P.encode(P.request("capture", id="k", source=video, output=str(out),
                                            options={"face": face, "feet": feet})))
        proc.stdin.flush()
        for line in events:
            ev = P.decode(line)
            if ev["event"] == "progress":
                reported = ev["frame"]
                if reported >= at:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            elif ev["event"] in ("done", "error"):
                break
    finally:
        proc.wait()
    cap = load_capture(out)
    return dict(kill_at_reported=reported, recovered=cap.num_frames, lost=reported - cap.num_frames,
                lost_s=round((reported - cap.num_frames) / float(cap["fps"]), 3),
                betas_kept=bool(np.abs(cap["betas"]).sum() > 0), scale=round(float(cap["scale"]), 4),
                identity_kept=bool(cap["face_identity"].size and np.abs(cap["face_identity"]).sum() > 0),
                contact_frames=int(cap["foot_contact"].any(1).sum()), ground_plane=bool(cap["ground_plane"].any()))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video")
    p.add_argument("--at", type=int, nargs="+", default=[35, 45, 55, 65, 75])
    p.add_argument("--no-face", action="store_true")
    p.add_argument("--no-feet", action="store_true", help="capture without the feet stage")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for i, at in enumerate(args.at):
            rows.append(one_kill(str(Path(args.video).resolve()), at, Path(d) / f"k{i}.npz", not args.no_face,
                                 not args.no_feet))
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(dict(kills=len(rows), feet=not args.no_feet, max_lost_frames=max(r["lost"] for r in rows),
                          max_lost_s=max(r["lost_s"] for r in rows),
                          per_clip_values_kept=all(r["betas_kept"] and r["identity_kept"] for r in rows))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
