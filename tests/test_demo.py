"""Main job pieces: the shipped sample, eval capture-gt, and the headless Blender step."""
import subprocess
import sys

import numpy as np
import pytest

from model_runtime.core.capture_file import load_capture
from model_runtime.evals.capture_gt import score
from model_runtime.core.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from model_runtime.core.skeleton import JOINT_NAMES

from conftest import REPO

GT = REPO / "samples" / "demo_clip_gt.npz"
CLIP = REPO / "samples" / "demo_clip.mp4"


def test_sample_clip_is_shipped_and_decodes():
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == load_capture(GT).num_frames == 81
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 480)


def test_capture_gt_is_zero_on_itself_and_sees_a_bent_elbow(tmp_path):
    same = score(GT, GT)
    assert same["frames"] == 81 and same["mpjpe_mm"] < 1e-6 and same["rotation_error_deg"] < 1e-3
    data = dict(np.load(GT))
    R = rot6d_to_matrix(data["pose_6d"].astype(np.float64))
    elbow = JOINT_NAMES.index("left_elbow")
    R[:, elbow] = R[:, elbow] @ axis_angle_to_matrix(np.array([0.0, 0.0, np.radians(30.0)]))
    data["pose_6d"] = matrix_to_rot6d(R).astype(np.float32)
    bent = tmp_path / "bent.npz"
    np.savez(bent, **data)
    res = score(bent, GT)
    # one of 21 relative rotations off by 30 degrees
    assert res["rotation_error_deg"] == pytest.approx(30.0 / 21, rel=1e-3)
    assert 5.0 < res["mpjpe_mm"] < 60.0 and res["root_error_mm"] < 1e-3


def test_headless_blender_writes_blend_and_fbx(tmp_path):
    blend, fbx = tmp_path / "a.blend", tmp_path / "a.fbx"
    r = subprocess.run([sys.executable, "-m", "fullbody_addon.headless", str(GT), "--blend", str(blend),
                        "--fbx", str(fbx), "--preset", "UNITY"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert blend.stat().st_size > 100_000 and fbx.stat().st_size > 100_000
    assert '"frames": 81' in r.stdout and '"bones": 52' in r.stdout


def test_headless_bad_capture_names_the_file(tmp_path):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"\x00" * 100)
    r = subprocess.run([sys.executable, "-m", "fullbody_addon.headless", str(bad)], cwd=REPO,
                       capture_output=True, text=True)
    assert r.returncode == 5 and "broken.npz" in r.stderr
