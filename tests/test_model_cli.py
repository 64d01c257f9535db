"""``model info`` / ``model export`` end to end through the official file layouts.

The sphere body of test_bridge is written as an AMASS-style SMPL-H ``.npz`` and
the cap face as a ``BFM_model_front.mat``, so loaders, automatic face region,
bridge, merged forward pass and OBJ writer run exactly as for the real files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_runtime.core.capture_file import CaptureWriter
from model_runtime.cli.main import main
from model_runtime.core.rotations import matrix_to_rot6d
from model_runtime.core.skeleton import JOINT_NAMES

from test_bridge import pose_with_head, write_official_layout_files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> tuple[Path, Path]:
    return write_official_layout_files(tmp_path_factory.mktemp("models"))


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = path.read_text().splitlines()
    v = np.array([[float(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    f = np.array([[int(x) for x in ln.split()[1:]] for ln in lines if ln.startswith("f ")]) - 1
    return v, f


def test_info_json(model_files, capsys):
    body, face = model_files
    code, out, err = run_cli(capsys, "model", "info", "--json", "--body", body, "--face", face)
    assert code == 0, err
    facts = json.loads(out)
    assert facts["joints"] == list(JOINT_NAMES) and facts["body"]["betas"] == 16
    assert facts["body"]["kind"] == "smplh" and facts["face"]["kind"] == "bfm"
    assert facts["face"]["basis_sizes"]["expression"] == 3 and facts["face"]["expression_names"][0] == "exp_000"
    m = facts["merged"]
    assert m["seam_open_boundary_edges"] == 0 and m["other_open_boundary_edges"] == 0
    assert m["vertices"] == m["body_vertices_kept"] + facts["face"]["vertices"]
    assert m["triangles"] > facts["face"]["triangles"] and m["bridge_triangles"] > 0


def test_info_text_via_real_entry_point(model_files):
    body, face = model_files
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "model_runtime", "model", "info", "--body", str(body), "--face", str(face)],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "seam open boundary edges: 0" in r.stdout and "left_pinky3" in r.stdout


def test_export_rest_and_posed(model_files, capsys, tmp_path):
    body, face = model_files
    code, _, err = run_cli(capsys, "model", "export", "--body", body, "--face", face, "--out", tmp_path / "rest.obj")
    assert code == 0, err
    v0, f0 = read_obj(tmp_path / "rest.obj")
    assert v0.shape[1] == 6 and f0.min() == 0 and f0.max() == len(v0) - 1
    face_cols = v0[:, 3:]
    assert np.allclose(face_cols, 0.6, atol=1e-3)  # face: mean albedo; body: its median
    # head turned by 60 deg yaw, given as a small JSON pose file
    pose = matrix_to_rot6d(pose_with_head(np.array([0.0, np.radians(60), 0.0]))[0])
    (tmp_path / "pose.json").write_text(json.dumps({"pose_6d": pose.tolist(), "expression": [0.5, 0, 0]}))
    code, _, err = run_cli(capsys, "model", "export", "--body", body, "--face", face, "--out", tmp_path / "p.obj",
                           "--pose", tmp_path / "pose.json")
    assert code == 0, err
    v1, f1 = read_obj(tmp_path / "p.obj")
    np.testing.assert_array_equal(f0, f1)
    moved = np.linalg.norm(v1[:, :3] - v0[:, :3], axis=1)
    assert moved[-50:].min() > 0.01  # the face turned with the head


def test_export_capture_frame_and_errors(model_files, capsys, tmp_path):
    body, face = model_files
    T = 3
    w = CaptureWriter(tmp_path / "cap.npz", static={
        "fps": 30.0, "image_size": [640, 480], "camera_K": np.eye(3), "joint_names": list(JOINT_NAMES),
        "betas": np.zeros(16), "scale": 1.0, "keypoint_names": ["a"], "face_identity": np.zeros(4),
        "face_albedo": np.zeros(2), "expression_names": ["a", "b", "c"], "body_model": "smplh", "face_model": "bfm"})
    for t in range(T):
        p6 = matrix_to_rot6d(pose_with_head(np.array([0.0, 0.3 * t, 0.0]))[0])
        w.append(pose_6d=p6, transl=np.zeros(3), valid=True, keypoints_2d=np.zeros((1, 3)),
                 keypoints_3d=np.zeros((1, 3)), face_expression=np.zeros(3), face_sh=np.zeros(27))
    w.close()
    code, _, err = run_cli(capsys, "model", "export", "--body", body, "--face", face, "--out", tmp_path / "f2.obj",
                           "--pose", tmp_path / "cap.npz", "--frame", 2)
    assert code == 0, err
    v2, _ = read_obj(tmp_path / "f2.obj")
    assert np.isfinite(v2).all()
    code, _, err = run_cli(capsys, "model", "export", "--body", body, "--face", face, "--out", tmp_path / "x.obj",
                           "--pose", tmp_path / "cap.npz", "--frame", 7)
    assert code == 5 and "frame 7" in err and "3 frames" in err
    (tmp_path / "bad.json").write_text(json.dumps({"pose_6d": [[1, 0, 0, 0, 1, 0]] * 24}))
    code, _, err = run_cli(capsys, "model", "export", "--body", body, "--face", face, "--out", tmp_path / "x.obj",
                           "--pose", tmp_path / "bad.json")
    assert code == 5 and "bad.json: field 'pose_6d' has shape (24, 6)" in err
    code, _, err = run_cli(capsys, "model", "info", "--body", tmp_path / "missing.npz")
    assert code == 5 and "missing.npz" in err


def test_bench_prints_timings(model_files, capsys):
    body, face = model_files
    code, out, err = run_cli(capsys, "model", "export", "--body", body, "--face", face, "--bench", 8, "--threads", 1)
    assert code == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r["batch"] == 8 and r["merged_forward_ms"] > 0 and r["body_lbs_ms"] > 0
