"""Capture file: incremental writing, crash recovery, validation errors."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from model_runtime.core import capture_file as cf
from model_runtime.core.errors import ModelFileError
from model_runtime.core.skeleton import JOINT_NAMES

K, E = 24, 52


def _static():
    return dict(fps=30.0, image_size=[640, 480], camera_K=np.eye(3), joint_names=np.array(JOINT_NAMES),
                betas=np.zeros(16), scale=1.0, keypoint_names=np.array([f"k{i}" for i in range(K)]),
                face_identity=np.zeros(80), face_albedo=np.zeros(80),
                expression_names=np.array([f"e{i}" for i in range(E)]), body_model="builtin", face_model="builtin")


def _frame(i):
    return dict(pose_6d=np.full((52, 6), i, np.float32), transl=[0, 0, i], valid=i % 2 == 0,
                keypoints_2d=np.zeros((K, 3)), keypoints_3d=np.zeros((K, 3)),
                face_expression=np.zeros(E), face_sh=np.zeros(27))


def test_write_close_load(tmp_path):
    out = tmp_path / "c.npz"
    w = cf.CaptureWriter(out, _static(), chunk_frames=4)
    for i in range(10):
        w.append(**_frame(i))
    w.update_static(betas=np.ones(16))
    assert w.close() == out
    assert not cf.partial_dir(out).exists()
    cap = cf.load_capture(out)
    assert cap.num_frames == 10
    np.testing.assert_array_equal(cap["pose_6d"][:, 0, 0], np.arange(10))
    np.testing.assert_array_equal(cap["valid"], np.arange(10) % 2 == 0)
    np.testing.assert_array_equal(cap["betas"], np.ones(16))
    assert int(cap["version"]) == cf.CAPTURE_VERSION


def test_hard_kill_keeps_finished_chunks(tmp_path):
    """A real child process writes frames and dies with os._exit: finished chunks survive."""
    out = tmp_path / "killed.npz"
    code = textwrap.dedent(f"""
        import numpy as np, os, sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from tests.test_capture_file import _static, _frame
        from model_runtime.core.capture_file import CaptureWriter
        w = CaptureWriter({str(out)!r}, _static(), chunk_frames=5)
        for i in range(13):
            w.append(**_frame(i))
        os._exit(9)  # crash: no close(), 3 frames still buffered
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd())
    assert r.returncode == 9
    assert not out.exists() and cf.partial_dir(out).exists()
    cap = cf.load_capture(out)  # recovers
    assert cap.num_frames == 10
    np.testing.assert_array_equal(cap["pose_6d"][:, 0, 0], np.arange(10))


def test_truncated_chunk_is_ignored(tmp_path):
    out = tmp_path / "t.npz"
    w = cf.CaptureWriter(out, _static(), chunk_frames=2)
    for i in range(4):
        w.append(**_frame(i))
    (cf.partial_dir(out) / "chunk_000002.npz").write_bytes(b"PK\x03\x04garbage")
    cap = cf.load_capture(out)
    assert cap.num_frames == 4


def test_abort_without_frames_leaves_nothing(tmp_path):
    out = tmp_path / "empty.npz"
    w = cf.CaptureWriter(out, _static())
    assert w.abort() is None
    assert not out.exists() and not cf.partial_dir(out).exists()


def test_errors_name_file_and_key(tmp_path):
    out = tmp_path / "c.npz"
    w = cf.CaptureWriter(out, _static())
    w.append(**_frame(0))
    w.close()
    data = dict(np.load(out))
    bad = tmp_path / "old.npz"
    np.savez(bad, **{**data, "version": np.int32(99)})
    with pytest.raises(ModelFileError, match=r"old\.npz.*version.*99"):
        cf.load_capture(bad)
    data.pop("transl")
    miss = tmp_path / "miss.npz"
    np.savez(miss, **data)
    with pytest.raises(ModelFileError, match=r"miss\.npz.*'transl'"):
        cf.load_capture(miss)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="junk.npz"):
        cf.load_capture(junk)
    with pytest.raises(ModelFileError, match="does not exist"):
        cf.load_capture(tmp_path / "nope.npz")
    with pytest.raises(KeyError):
        w2 = cf.CaptureWriter(tmp_path / "x.npz", _static())
        w2.append(pose_6d=np.zeros((52, 6)))
