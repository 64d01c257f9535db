"""A dry run of the GPU scripts as the bare GPU machine runs them (PyTorch and numpy only):

    PATH=$PWD/.venv/bin:$PATH PYTHONPATH=$PWD/scripts/bare_device DETNET_DEVICE=cpu DETNET_GPU_MINUTES=1 \\
        OUT=out/detnet/gpu_dry bash scripts/gpu_detnet.sh
    PATH=$PWD/.venv/bin:$PATH PYTHONPATH=$PWD/scripts/bare_device FACENET_DEVICE=cpu FACENET_GPU_STEPS=4 \\
        OUT=out/facenet/gpu_dry bash scripts/gpu_facenet.sh

Python imports this module at start-up when it is on the path; it makes the packages that machine lacks
unimportable (roma and tqdm are carried there in out/device_site, so they stay)."""
import sys

for _name in ("cv2", "scipy", "mediapipe"):
    sys.modules[_name] = None
