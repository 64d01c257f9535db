#!/usr/bin/env bash
# Face figures on the six talking/dancing clips (d0, d3, s20, AOC; raw_0, raw_5 as checks):
#   bash tools/face_clips_run.sh TAG [CODE_DIR]
# captures each clip with the code in CODE_DIR (default: this checkout; a `git worktree` of another
# commit gives the "before") into out/face_clips/TAG/CLIP.npz and scores it with `eval face-video`
# (landmark cache out/face_clips/lm/CLIP.lm.npz, written on first use) into out/face_clips/TAG/CLIP.json.
# Compare two tags with: .venv/bin/python tools/face_clips_compare.py TAG_A TAG_B
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
T=$1; CODE=${2:-$REPO}
P=${PYTHON:-$REPO/.venv/bin/python}
R=${REALDATA:-$(cd "$REPO/.." && pwd)/shared/data/realdata}
O=$REPO/out/face_clips/$T; L=$REPO/out/face_clips/lm; mkdir -p "$O" "$L"
for c in d0:LivePortrait/assets/examples/driving/d0.mp4 d3:LivePortrait/assets/examples/driving/d3.mp4 \
         s20:LivePortrait/assets/examples/source/s20.mp4 aoc:SadTalker/examples/ref_video/WDA_AlexandriaOcasioCortez_000.mp4 \
         raw_0:MimicMotion/assets/comparisons/raw_0.mp4 raw_5:MimicMotion/assets/comparisons/raw_5.mp4; do
  n=${c%%:*}; v=$R/${c#*:}
  (cd "$CODE" && "$P" -m model_runtime capture "$v" -o "$O/$n.npz" --quiet --overwrite 2>&1 | grep -i "wrote\|error")
  (cd "$REPO" && "$P" -m model_runtime eval face-video "$O/$n.npz" --video "$v" --json --landmarks-cache "$L/$n.lm.npz" > "$O/$n.json")
done
