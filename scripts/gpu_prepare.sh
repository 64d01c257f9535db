#!/usr/bin/env bash
# Prepare what a lent GPU machine needs for scripts/gpu_detnet.sh (run here, before the device call).
# The device is bare: PyTorch (with numpy), no OpenCV, scipy, MediaPipe, roma or tqdm, no ../shared.
#   out/device_site/      the pure-Python packages the training imports (roma, tqdm), copied from .venv
#   out/detnet/pose_bank_train.npz   the synthetic engine's training poses (retargeted HDM05 + Bandai Namco,
#                         float16 6D, ~2 MB; made once, ~7 min; derived from ../shared/data/mocap, never committed)
#   out/detnet/teacher_packed.npz    held-in real frames labelled by MediaPipe, packed (never committed)
#   out/facenet/cache_device/        ~860 faces of FaceNet's training cache (~35 MB; never committed), for
#                         scripts/gpu_facenet.sh (carry out/device_site, out/facenet/cache_device, out/facenet/run_gpu)
# Then: run(command="bash scripts/gpu_detnet.sh", carry=["out/device_site", "out/detnet/pose_bank_train.npz",
#           "out/detnet/teacher_packed.npz", "out/detnet/run_gpu"], timeout_s=590)
set -eu
cd "$(dirname "$0")/.."
SITE=$(.venv/bin/python -c "import roma, os; print(os.path.dirname(os.path.dirname(roma.__file__)))")
mkdir -p out/device_site out/detnet
for pkg in roma tqdm; do
  rm -rf "out/device_site/$pkg"
  cp -r "$SITE/$pkg" out/device_site/
done
find out/device_site -name __pycache__ -prune -exec rm -rf {} +
[ -f out/detnet/pose_bank_train.npz ] || .venv/bin/python -m model_runtime train detnet --make-pose-bank out/detnet/pose_bank_train.npz
# the real frames: the MediaPipe teacher cache (train detnet --make-teacher [--teacher-every 1]) packed into
# square crops with their labels (~34 MB for 439 frames), read on the device without OpenCV
TEACHER=${TEACHER_DIR:-out/detnet/teacher_every1}
[ -d "$TEACHER" ] || TEACHER=out/detnet/teacher
if [ -f "$TEACHER/labels.npz" ] && [ ! -f out/detnet/teacher_packed.npz ]; then
  .venv/bin/python -m model_runtime train detnet --pack-teacher out/detnet/teacher_packed.npz --teacher-dir "$TEACHER" --pack-frames 400
fi
# FaceNet: a subset of its training cache (train facenet --cache-only builds the whole one, ~140 MB)
FCACHE=${FACENET_CACHE:-out/facenet/cache_s10}
[ -d "$FCACHE" ] || FCACHE=out/facenet/cache
if [ -d "$FCACHE" ] && [ ! -d out/facenet/cache_device ]; then
  .venv/bin/python -m model_runtime train facenet --cache-dir "$FCACHE" --subset-cache out/facenet/cache_device --subset-faces 800
fi
du -sh out/device_site out/detnet/pose_bank_train.npz out/detnet/teacher_packed.npz out/facenet/cache_device 2>/dev/null
