"""DetNet training on a lent GPU machine, checked without one (scripts/gpu_detnet.sh).

The device is bare: PyTorch with numpy, no OpenCV, scipy or MediaPipe, no ``../shared``.  Its training
burst generates synthetic images on the device (``--mix synth-live``) with body poses from a carried
pose bank (``--synth-pose-bank``, made here by ``--make-pose-bank``).

* ``warp_affine`` without OpenCV (torch ``grid_sample``) gives OpenCV's ``warpAffine`` image, on a real
  frame of the sample clip, rotated and scaled;
* the pose bank round-trips (float16 6D) and a malformed or missing file is refused naming it;
* ``--pack-teacher`` packs teacher frames (here: six frames of the sample clip with their recorded
  MediaPipe detections, ``tests/data``) into square crops whose labels still sit on the person;
* the training command of the GPU script (``--mix synth-live:1,packed:1``) runs end to end with OpenCV,
  scipy and MediaPipe made unimportable (a subprocess; CPU instead of CUDA, one step, from the shipped weights).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model_runtime.core.errors import ModelFileError
from model_runtime.detectors.detnet import data as D
from model_runtime.synth import poses as P

REPO = Path(__file__).resolve().parents[1]


def test_warp_affine_without_opencv_matches_opencv(monkeypatch):
    cap = cv2.VideoCapture(str(REPO / "samples/demo_clip.mp4"))
    ok, frame = cap.read()
    assert ok
    a, s = np.deg2rad(17.0), 0.61
    M = np.array([[s * np.cos(a), -s * np.sin(a), 40.0], [s * np.sin(a), s * np.cos(a), -25.0]])
    ref = D.warp_affine(frame, M, 256)
    monkeypatch.setattr("model_runtime.synth.postfx.opencv", lambda: None)
    got = D.warp_affine(frame, M, 256)
    assert got.shape == ref.shape == (256, 256, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3      # OpenCV's fixed-point weights vs float


def test_pose_bank_round_trip_and_bad_files(tmp_path):
    gen = torch.Generator().manual_seed(0)
    rot = torch.stack([P.random_body_pose(gen) for _ in range(20)])             # (20, 22, 3, 3)
    path = tmp_path / "bank.npz"
    P.save_pose_bank(path, rot)
    back = P.load_pose_bank(path)
    assert back.shape == (20, 22, 3, 3) and back.dtype == torch.float32
    assert float((back - rot).abs().max()) < 5e-3                               # float16 storage
    np.savez(tmp_path / "bad.npz", rot6d=np.zeros((5, 21, 6), np.float16))
    with pytest.raises(ModelFileError, match=r"bad\.npz.*rot6d"):
        P.load_pose_bank(tmp_path / "bad.npz")
    with pytest.raises(ModelFileError, match=r"nothing\.npz"):
        P.load_pose_bank(tmp_path / "nothing.npz")


def _teacher_cache(folder: Path) -> Path:
    """A teacher cache (the layout of ``train detnet --make-teacher``) of six sample-clip frames with their
    recorded MediaPipe detections."""
    rec = np.load(REPO / "tests/data/demo_clip_detections.npz")
    (folder / "images").mkdir(parents=True)
    cap = cv2.VideoCapture(str(REPO / "samples/demo_clip.mp4"))
    rows, i = [], 0
    while len(rows) < 6:
        ok, frame = cap.read()
        assert ok
        if i % 10 == 0 and rec["person"][i]:
            cv2.imwrite(str(folder / "images" / f"{len(rows):06d}.jpg"), frame)
            rows.append(i)
        i += 1
    wb = rec["wholebody_2d"][rows].astype(np.float32)
    np.savez(folder / "labels.npz", body_2d=rec["body_2d"][rows], body_3d=rec["body_3d"][rows],
             hands_2d=rec["hands_2d"][rows], hands_3d=rec["hands_3d"][rows], face_68=wb[:, 23:91],
             source=np.array([f"demo_clip.mp4#{r}" for r in rows]))
    return folder


def test_pack_teacher_keeps_the_labels_on_the_person(tmp_path):
    from model_runtime.cli.main import main
    from model_runtime.detectors.detnet.data import PackedTeacher, TeacherFrames

    teacher = _teacher_cache(tmp_path / "teacher")
    out = tmp_path / "packed.npz"
    assert main(["train", "detnet", "--pack-teacher", str(out), "--teacher-dir", str(teacher),
                 "--pack-frames", "6", "--input-size", "128"]) == 0
    packed, frames = PackedTeacher(out), TeacherFrames(teacher)
    assert len(packed) == 6 and packed.images.shape == (6, 128, 128, 3)
    for i in range(6):
        img, lab = packed[i]
        src, slab = frames[i]
        seen = lab["body_vis"] > 0
        assert seen.sum() >= 10 and (lab["body_vis"] == slab["body_vis"]).all()   # all inside the crop
        # the crop is the frame scaled about the person: pixel colours under the labelled points agree
        p_new = np.round(lab["body_2d"][seen]).astype(int).clip(0, 127)
        p_old = np.round(slab["body_2d"][seen]).astype(int)
        a = img[p_new[:, 1], p_new[:, 0]].astype(float)
        b = src[p_old[:, 1].clip(0, src.shape[0] - 1), p_old[:, 0].clip(0, src.shape[1] - 1)].astype(float)
        assert np.median(np.abs(a - b)) < 40
    np.savez(tmp_path / "bad.npz", image=np.zeros((2, 8, 8, 3), np.uint8), held=np.zeros(2, bool))
    with pytest.raises(ModelFileError, match=r"bad\.npz"):
        PackedTeacher(tmp_path / "bad.npz")


def test_synth_live_training_runs_on_a_bare_machine(tmp_path):
    from model_runtime.cli.main import main

    gen = torch.Generator().manual_seed(1)
    bank = tmp_path / "bank.npz"
    P.save_pose_bank(bank, torch.stack([P.random_body_pose(gen) for _ in range(16)]))
    packed = tmp_path / "packed.npz"
    assert main(["train", "detnet", "--pack-teacher", str(packed), "--teacher-dir", str(_teacher_cache(tmp_path / "t")),
                 "--pack-frames", "6"]) == 0
    run = tmp_path / "run"
    args = ["train", "detnet", "--device", "cpu", "--mix", "synth-live:1,packed:1", "--synth-pose-bank", str(bank),
            "--packed", str(packed),
            "--synth-live-val", "2", "--init-from", str(REPO / "model_runtime/detectors/detnet/weights/detnet_small.pt"),
            "--run-dir", str(run), "--resume", "--steps", "1", "--batch", "2", "--threads", "1",
            "--checkpoint-every", "1", "--export", str(run / "best.pt")]
    code = ("import sys\n"
            "for m in ('cv2', 'scipy', 'mediapipe'):\n"
            "    sys.modules[m] = None          # not on the device\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "from model_runtime.cli.main import main\n"
            f"sys.exit(main({args!r}))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "poses from" in r.stderr and "packed: 6 training crops" in r.stderr
    from model_runtime.detectors.detnet.weights import load_weights

    net, meta = load_weights(run / "best.pt")
    assert (run / "checkpoint.pt").is_file() and meta["mix"] == "synth-live:1,packed:1"
