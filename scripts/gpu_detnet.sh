#!/usr/bin/env bash
# DetNet on a lent GPU (bare machine with PyTorch; <= 10 min per call).  Prepare here first:
#
#   bash scripts/gpu_prepare.sh
#   run(command="bash scripts/gpu_detnet.sh", carry=["out/device_site", "out/detnet/pose_bank_train.npz",
#       "out/detnet/teacher_packed.npz", "out/detnet/run_gpu"], timeout_s=590)
#
# 1. per-module runtime (Table 1 style) of DetNet small/base x Table 6 variants, batch 1 and 16, fp16;
# 2. a training burst (DETNET_GPU_MINUTES, default 6) on synthetic images generated on the device itself
#    (`--mix synth-live`, poses from the carried pose bank, procedural backgrounds: the device has no
#    OpenCV, scipy or ../shared), resumed from the carried out/detnet/run_gpu when there is one, else
#    initialised from the shipped detnet_small.pt; with the carried packed teacher frames (real, MediaPipe
#    labels) mixed in 1:1 and validated on their held-out sources, else validated on fixed synthetic images.
#    Checked without a GPU by tests/test_detnet_device.py (the same command with OpenCV, scipy and
#    MediaPipe made unimportable).
# Everything it writes goes to $OUT (timing JSON, the run folder with curves, checkpoint and best.pt).
set -u
OUT=${OUT:-out/detnet/gpu}
MIN=${DETNET_GPU_MINUTES:-6}
DEV=${DETNET_DEVICE:-cuda}          # cpu: the same steps on a machine without a GPU (a dry run)
export PYTHONPATH="$PWD/out/device_site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
python - <<'PY'
import torch, sys
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", file=sys.stderr)
PY
for B in 1 16; do
  timeout 120 python -m model_runtime.detectors.detnet.timing --device "$DEV" --batch "$B" --repeat 50 --json \
    > "$OUT/timing_b$B.json" || echo "timing batch $B failed" >&2
  cat "$OUT/timing_b$B.json"
done
RUN="$OUT/run_gpu"
mkdir -p "$RUN"
INIT=""
if [ -f out/detnet/run_gpu/checkpoint.pt ]; then
  cp -r out/detnet/run_gpu/. "$RUN/"
else
  INIT="--init-from model_runtime/detectors/detnet/weights/detnet_small.pt"
fi
MIX=synth-live:1
[ -f out/detnet/teacher_packed.npz ] && MIX=synth-live:1,packed:1
timeout $((MIN * 60 + 90)) python -m model_runtime train detnet --device "$DEV" --mix "$MIX" \
  --synth-pose-bank out/detnet/pose_bank_train.npz --synth-live-val 64 $INIT \
  --run-dir "$RUN" --resume --steps 20000 --batch 64 --lr 5e-4 --threads 8 --max-minutes "$MIN" \
  --checkpoint-every 200 --log-every 50 --export "$RUN/best.pt" 2> "$OUT/train.log"
tail -8 "$OUT/train.log"
