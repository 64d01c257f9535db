#!/usr/bin/env bash
# Body figures on the issue-10 clips: bash tools/fidelity_clips_run.sh OUTDIR CLIP... [CODE_DIR=.]
# captures each CLIP (tennis courtyard openpose raw_0 romp d0 d3 aoc) with the code in CODE_DIR (default:
# this checkout; a `git worktree` of another commit gives the "before") into OUTDIR/CLIP.npz, scores it
# with `eval video` into OUTDIR/CLIP.json and prints one line: the camera's source and focal, body and
# hands median px, foot slide mm/frame, jitter mm/frame^2.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
P=${PYTHON:-$REPO/.venv/bin/python}
R=${REALDATA:-$(cd "$REPO/.." && pwd)/shared/data/realdata}
CODE=${CODE_DIR:-$REPO}
OUT=$(realpath -m "$1"); shift; mkdir -p "$OUT"
declare -A V=( [tennis]=GVHMR/docs/example_video/tennis.mp4 [courtyard]=mmhuman3d/demo/resources/single_person_demo.mp4
               [openpose]=openpose/examples/media/video.avi [raw_0]=MimicMotion/assets/comparisons/raw_0.mp4
               [romp]=ROMP/demo/videos/sample_video.mp4 [d0]=LivePortrait/assets/examples/driving/d0.mp4
               [d3]=LivePortrait/assets/examples/driving/d3.mp4
               [aoc]=SadTalker/examples/ref_video/WDA_AlexandriaOcasioCortez_000.mp4 )
for c in "$@"; do
  v=$R/${V[$c]}
  (cd "$CODE" && "$P" -m model_runtime capture "$v" -o "$OUT/$c.npz" --quiet --overwrite 2>&1 | grep -i "error")
  (cd "$REPO" && "$P" -m model_runtime eval video "$OUT/$c.npz" --video "$v" --json > "$OUT/$c.json" 2>/dev/null)
  "$P" - "$OUT/$c.npz" "$OUT/$c.json" "$c" <<'PY'
import json, sys
import numpy as np
z, d, c = np.load(sys.argv[1]), json.load(open(sys.argv[2])), sys.argv[3]
r = d["reprojection_px"]
f = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
print(c, str(z["camera_source"]), round(float(z["camera_K"][0, 0]), 1), "body", f(r["body_median"]), "hands",
      f(r["hands_median"]), "slide", f(d["foot_slide_mm_per_frame"]), "jitter", f(d["jitter_mm_per_frame2"]))
PY
done
