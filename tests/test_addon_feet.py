"""Feet in Blender (issue 10): the import options *Lock Feet* (a foot-lock rig: empties, IK on the
shins, influence = keyed contact x the armature's ``foot_lock`` switch) and *Ground Plane* (a plane
object on the capture's ground plane), neither of which touches the bones' keys.

The capture is real: the recorded MediaPipe detections of the demo clip (``tests/data``) through
the real capture pipeline with its feet stage (made in a subprocess).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import fullbody_addon  # noqa: E402
from fullbody_addon import avatar, feet_lock  # noqa: E402
from fullbody_addon.axes import CAMERA_TO_BLENDER  # noqa: E402
from model_runtime.core.capture_file import load_capture  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def capture_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("feet") / "demo_feet.npz"
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from model_runtime.capture.pipeline import build_pipeline\n"
            "from model_runtime.core.options import CaptureOptions\n"
            "from tests.test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording\n"
            "pipe = build_pipeline(CaptureOptions(device='cpu', face=False), detector=ReplayDetector())\n"
            f"pipe.run(GreyFrames(_load_recording()), {str(path)!r})\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=600)
    return path


@pytest.fixture
def scene(addon):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    s = bpy.context.scene
    s.fullbody.body_model = "BUILTIN"
    s.fullbody.face = False
    return s


def _captured_ankles(cap) -> np.ndarray:
    """The capture's posed ankles ``(T, 2, 3)`` in Blender world (the camera at the origin)."""
    from model_runtime.evals.video import PosedCapture

    J = PosedCapture(cap).joints[:, [7, 8]]
    return J @ np.asarray(CAMERA_TO_BLENDER).T


def _ankle_world(arm, side: str) -> np.ndarray:
    """The evaluated ankle (tail of the shin bone) in world space, constraints included."""
    bpy.context.view_layer.update()
    pb = arm.pose.bones[f"{side}_knee"]
    return np.array(arm.matrix_world @ pb.tail)


def test_lock_feet_and_ground_plane(scene, capture_path):
    cap = load_capture(capture_path)
    contact = cap["foot_contact"]
    assert contact[:, 0].any() and (~contact[:, 0]).any() and cap["ground_plane"].any()
    assert bpy.ops.fullbody.import_capture(filepath=str(capture_path)) == {"FINISHED"}
    arm = avatar.find_avatar(bpy.context)
    start = scene.frame_start
    empties = [bpy.data.objects[f"{arm.name}_foot_{s}"] for s in "LR"]
    ground = bpy.data.objects[f"{arm.name}_ground"]
    assert arm[feet_lock.LOCK_PROPERTY] == 1.0
    want = _captured_ankles(cap)
    for f, side in enumerate(("left", "right")):
        con = arm.pose.bones[f"{side}_knee"].constraints[feet_lock.CONSTRAINT_NAME]
        assert con.type == "IK" and con.target == empties[f] and con.chain_count == 2
        w = feet_lock.contact_weights(contact[:, f], feet_lock.blend_frames(float(cap["fps"])))
        # the empty is on the captured ankle (numpy FK of the keys = the capture's own FK)
        for t in range(0, len(contact), 7):
            scene.frame_set(start + t)
            np.testing.assert_allclose(np.array(empties[f].matrix_world.translation), want[t, f], atol=2e-3)
            assert con.influence == pytest.approx(float(w[t]), abs=1e-6)
        # the captured keys alone: the rig leaves the ankle where they put it, still on planted frames
        planted = np.nonzero(contact[:, f])[0]
        for t in planted[:: max(1, len(planted) // 6)]:
            scene.frame_set(start + int(t))
            np.testing.assert_allclose(_ankle_world(arm, side), want[t, f], atol=3e-3)
        # an edit (the whole avatar 10 cm sideways): the planted ankle stays put; switched off, it moves
        t = int(planted[len(planted) // 2])
        scene.frame_set(start + t)
        before = _ankle_world(arm, side)
        arm.location.x += 0.1
        scene.frame_set(start + t)
        assert np.linalg.norm(_ankle_world(arm, side) - before) < 0.01
        arm[feet_lock.LOCK_PROPERTY] = 0.0
        arm.update_tag()                      # what editing the property in the UI does
        scene.frame_set(start + t)
        assert con.influence == 0.0
        np.testing.assert_allclose(_ankle_world(arm, side) - before, [0.1, 0, 0], atol=2e-3)
        arm[feet_lock.LOCK_PROPERTY] = 1.0
        arm.update_tag()
        arm.location.x -= 0.1
    # the ground plane: its normal is the capture's up, and the planted ankles stand a few cm above it
    n = np.asarray(CAMERA_TO_BLENDER) @ cap["ground_plane"][:3].astype(np.float64)
    z = np.array(ground.matrix_world.to_3x3().col[2])
    assert np.degrees(np.arccos(np.clip(z @ n, -1, 1))) < 0.1
    origin = np.array(ground.matrix_world.translation)
    h = (want[contact] - origin) @ n
    assert 0.03 < np.median(h) < 0.15


def test_options_off_add_nothing(scene, capture_path):
    scene.fullbody.lock_feet = False
    scene.fullbody.ground_plane = False
    assert bpy.ops.fullbody.import_capture(filepath=str(capture_path)) == {"FINISHED"}
    arm = avatar.find_avatar(bpy.context)
    assert not any(o.name.startswith(f"{arm.name}_foot_") or o.name == f"{arm.name}_ground" for o in bpy.data.objects)
    assert not any(c.name == feet_lock.CONSTRAINT_NAME for pb in arm.pose.bones for c in pb.constraints)


def test_contact_weights_ramp():
    c = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0], bool)
    w = feet_lock.contact_weights(c, blend=2)
    assert (w[4:6] == 1).all() and w[0] == 0 and w[1] == 0 and w[9] == 0
    assert 0 < w[2] < w[3] < 1 and 1 > w[6] > w[7] > 0
    assert not feet_lock.contact_weights(np.zeros(5, bool)).any()


def test_blender_ramp_is_the_runtime_ramp():
    """The rig's contact ramp lasts as long as the runtime's lock ramp, in seconds (12 fps: 2 frames, 60 fps: 6)."""
    from model_runtime.capture import feet

    assert (feet_lock.BLEND_S, feet_lock.BLEND_MIN_FRAMES) == (feet.BLEND_S, feet.BLEND_MIN_FRAMES)
    assert [feet_lock.blend_frames(f) for f in (12.0, 30.0, 60.0, 0.0)] == [2, 3, 6, 2]
