#!/usr/bin/env bash
# DetNet on a lent GPU (bare machine with PyTorch; <= 10 min per call).  Run from the repo root:
#
#   run(command="bash scripts/gpu_detnet.sh", carry=["out/detnet/teacher", "out/detnet/run_small_both"], timeout_s=590)
#
# 1. per-module runtime (Table 1 style) of DetNet small/base x Table 6 variants, batch 1 and 16, fp16;
# 2. a training burst (--max-minutes, default 6) resumed from the carried CPU run if there is one,
#    on the carried MediaPipe teacher cache (hand-graph-cnn is not on the device: --mix teacher:1);
#    skipped when OpenCV is missing (the data loader decodes JPEGs and warps with cv2).
# Everything it writes goes to $OUT (timing JSON, the run folder with curves and checkpoint).
set -u
OUT=${OUT:-out/detnet/gpu}
MIN=${DETNET_GPU_MINUTES:-6}
mkdir -p "$OUT"
python - <<'PY'
import torch, sys
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", file=sys.stderr)
PY
for B in 1 16; do
  timeout 120 python -m model_runtime.detectors.detnet.timing --device cuda --batch "$B" --repeat 50 --json \
    > "$OUT/timing_b$B.json" || echo "timing batch $B failed" >&2
  cat "$OUT/timing_b$B.json"
done
if python -c "import cv2, scipy" 2>/dev/null && [ -f out/detnet/teacher/labels.npz ]; then
  RUN="$OUT/run_small_both"
  [ -d out/detnet/run_small_both ] && cp -r out/detnet/run_small_both/. "$RUN/"
  timeout $((MIN * 60 + 60)) python -m model_runtime train detnet --device cuda --mix teacher:1 \
    --run-dir "$RUN" --resume --steps 20000 --batch 64 --threads 8 --max-minutes "$MIN" --until 100000 \
    --export "$RUN/best.pt" 2> "$OUT/train.log"
  tail -5 "$OUT/train.log"
else
  echo "training burst skipped: needs cv2 + scipy and the carried out/detnet/teacher" >&2
fi
