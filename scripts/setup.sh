#!/usr/bin/env bash
# Create .venv/ (Python 3.11) with the pinned runtime + dev requirements. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch==2.13.0 resolves to the local CPU wheel; other specs would pull CUDA builds.
  .venv/bin/python -m pip install -q -r requirements/dev.txt -c requirements/constraints.txt
  echo "$want" > "$stamp"
fi
.venv/bin/python -c "import torch, numpy, cv2, mediapipe, bpy; print('runtime ok: torch', torch.__version__, 'numpy', numpy.__version__, 'mediapipe', mediapipe.__version__, 'bpy', bpy.app.version_string)"
