"""What the camera saw, in Blender (issue 10): each pose bone's ``confidence`` property is keyed
from the capture's ``joint_confidence``, and with "Key Unseen Parts" off a bone gets no rotation
key where its confidence is 0.

The capture is real: the recorded MediaPipe detections of the demo clip (``tests/data``) through
the real capture pipeline, with the legs moved below the image from frame 30 on (made in a
subprocess by :func:`tests.test_visibility._capture_legs_out_of_frame`).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import fullbody_addon  # noqa: E402
from fullbody_addon import avatar, importer  # noqa: E402
from model_runtime.core.capture_file import load_capture  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LEAVE_AT = 30


@pytest.fixture(scope="module")
def capture_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("visibility") / "legs_leave.npz"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from model_runtime.capture.pipeline import build_pipeline\n"
            "from model_runtime.core.options import CaptureOptions\n"
            "from tests.test_capture_orchestration import ReplayDetector\n"
            "from tests.test_visibility import _capture_legs_out_of_frame\n"
            "pipe = build_pipeline(CaptureOptions(device='cpu', face=False), detector=ReplayDetector())\n"
            f"_capture_legs_out_of_frame(pipe, set(range({LEAVE_AT}, 81)), {str(path)!r})\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=600)
    return path


@pytest.fixture
def scene(addon):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    s = bpy.context.scene
    s.fullbody.body_model = "BUILTIN"
    s.fullbody.face = False
    return s


def _keys(arm, data_path: str, index: int = 0) -> np.ndarray:
    """``(n, 2)`` (frame, value) of an F-curve of the avatar's capture action."""
    bag = arm.animation_data.action.layers[0].strips[0].channelbag(arm.animation_data.action_slot)
    fc = bag.fcurves.find(data_path, index=index)
    assert fc is not None, data_path
    co = np.empty(2 * len(fc.keyframe_points), np.float32)
    fc.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)


@pytest.mark.parametrize("key_unseen", [True, False])
def test_confidence_keys_and_unseen_parts(scene, capture_path, key_unseen):
    cap = load_capture(capture_path)
    T = cap.num_frames
    conf = cap["joint_confidence"]
    names = [str(n) for n in cap["joint_names"]]
    knee = names.index("left_knee")
    assert (conf[:LEAVE_AT, knee] > 0).all() and (conf[-20:, knee] == 0).all()    # the capture says so
    scene.fullbody.key_unseen = key_unseen
    assert bpy.ops.fullbody.import_capture(filepath=str(capture_path)) == {"FINISHED"}
    arm = avatar.find_avatar(bpy.context)
    start = scene.frame_start
    for bone in arm.pose.bones:
        j = names.index(bone.name)
        keys = _keys(arm, f'pose.bones["{bone.name}"]["{importer.CONFIDENCE_PROPERTY}"]')
        np.testing.assert_array_equal(keys[:, 0], start + np.arange(T))
        np.testing.assert_allclose(keys[:, 1], conf[:, j], atol=1e-6)
        rot = _keys(arm, f'pose.bones["{bone.name}"].rotation_quaternion', index=1)
        want = np.arange(T) if key_unseen else np.nonzero(conf[:, j] > 0)[0]
        np.testing.assert_array_equal(rot[:, 0], start + want)
    rot = _keys(arm, 'pose.bones["left_knee"].rotation_quaternion')
    assert len(rot) == (T if key_unseen else int((conf[:, knee] > 0).sum())) and len(rot) > LEAVE_AT - 1
    assert len(_keys(arm, 'pose.bones["spine1"].rotation_quaternion')) == T     # seen throughout
    t = T - 5
    scene.frame_set(start + t)                                   # the property is animated
    assert arm.pose.bones["left_knee"][importer.CONFIDENCE_PROPERTY] == pytest.approx(float(conf[t, knee]))
    scene.frame_set(start + 3)
    assert arm.pose.bones["left_knee"][importer.CONFIDENCE_PROPERTY] == pytest.approx(float(conf[3, knee]))
