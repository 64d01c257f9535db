#!/usr/bin/env bash
# FaceNet on a lent GPU (bare machine with PyTorch; <= 10 min per call).  Prepare here first:
#
#   bash scripts/gpu_prepare.sh
#   run(command="bash scripts/gpu_facenet.sh", carry=["out/device_site", "out/facenet/cache_device",
#       "out/facenet/run_gpu"], timeout_s=590)
#
# A training burst (FACENET_GPU_STEPS of the cosine schedule, default 6000, cut at 8 min) on the carried subset of
# the training cache (no MediaPipe, OpenCV or ../shared needed: the cache holds the crops and the fit's
# targets), resumed from the carried out/facenet/run_gpu when there is one, else fine-tuned from the
# shipped weights; the held-out clip (AOC) is the landmark check.  The exported weights go to
# $OUT/export (never over the shipped file): judge them with the ship rule of docs/facenet.md.
# Dry run on a CPU: FACENET_DEVICE=cpu.  Checked without a GPU by tests/test_facenet.py
# (test_training_on_a_carried_cache_subset_needs_no_opencv_or_mediapipe).
set -u
OUT=${OUT:-out/facenet/gpu}
STEPS=${FACENET_GPU_STEPS:-6000}
DEV=${FACENET_DEVICE:-cuda}
export PYTHONPATH="$PWD/out/device_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
RUN="$OUT/run_gpu"
mkdir -p "$RUN"
INIT="--init-from model_runtime/face/weights/facenet_builtin.pt"
if [ -f out/facenet/run_gpu/checkpoint.pt ]; then
  cp -r out/facenet/run_gpu/. "$RUN/"
  INIT="--resume"
fi
# cut at 8 min: the checkpoint (every 250 steps) is resumed by the next call; the weights are exported either way
timeout 480 python -m model_runtime train facenet --device "$DEV" --cache-dir out/facenet/cache_device \
  --data "$PWD/no_realdata" $INIT --run-dir "$RUN" --steps "$STEPS" --batch 64 --lr 5e-4 --threads 8 \
  --no-export 2> "$OUT/train.log"
python -m model_runtime train facenet --device "$DEV" --cache-dir out/facenet/cache_device --data "$PWD/no_realdata" \
  --run-dir "$RUN" --steps "$STEPS" --export-only --export-dir "$OUT/export" 2>> "$OUT/train.log"
tail -6 "$OUT/train.log"
