"""Shared test configuration.

Tests that read the research data in ../shared skip cleanly when it is absent
(it is never copied into the repo).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FULLBODY_SHARED", REPO.parent / "shared"))
REALDATA = SHARED / "data" / "realdata"
MOCAP = SHARED / "data" / "mocap"

# keep torch from oversubscribing the 2-core CI machine
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"research data not available at {REALDATA}")
    return REALDATA


@pytest.fixture(scope="session")
def mocap_dir() -> Path:
    if not MOCAP.is_dir():
        pytest.skip(f"MoCap data not available at {MOCAP}")
    return MOCAP


@pytest.fixture(scope="session")
def d0_first_frame():
    """LivePortrait d0's first frame (shared data) and MediaPipe's detection of it (refined face mesh,
    iris points): ``(image_bgr, Detection)``; skips without the data."""
    video = REALDATA / "LivePortrait/assets/examples/driving/d0.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is missing (shared real data)")
    import cv2

    from model_runtime.detectors import make_detector

    img = cv2.VideoCapture(str(video)).read()[1]
    with make_detector("mediapipe") as det:
        return img, det.detect(img)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small per-frame torch batches (IK, retargeting): one thread is faster, and far faster when
    the two shared cores are busy.  Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def addon():
    """The Blender add-on registered for one test module (bpy imported on first use, so tests
    without Blender never load it).  ``test_addon_runtime`` overrides it to point the add-on at
    this project's runtime."""
    import fullbody_addon

    fullbody_addon.register()
    yield
    fullbody_addon.unregister()
