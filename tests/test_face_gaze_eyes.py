"""Gaze (iris landmarks -> eyeLook* keys) and the avatar's eyes in real Blender (bpy as a module).

* ``face.gaze``: the iris offset in eye widths of synthetic eye landmarks, key <-> angle round trip,
  the per-clip neutral offset and the hold on closed lids; the real detector on a real video frame
  gives the 10 iris landmarks.
* Blender: importing a capture of the built-in face makes two eyeballs parented to the ``head``
  bone, inside the head in front of the socket, turned per frame by the capture's eyeLook* keys;
  they follow the head bone.
"""
from __future__ import annotations

import numpy as np
import pytest

from model_runtime.face import gaze


NAMES = ("eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
         "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "jawOpen")


def _eyes(shift_x: float = 0.0, shift_y: float = 0.0, open_: float = 0.3):
    """Landmarks (468, 2) and iris (10, 2) of two upright eyes 30 px wide, iris shifted by
    ``shift`` eye widths (x to the person's left = image right)."""
    lm = np.zeros((468, 2))
    ir = np.zeros((10, 2))
    for (up, lo, a, b), c, x0 in zip(gaze.EYES, gaze.IRIS_CENTRE, (100.0, 160.0)):
        lm[a], lm[b] = (x0, 200.0), (x0 + 30.0, 200.0)
        lm[up], lm[lo] = (x0 + 15.0, 200.0 - 15 * open_), (x0 + 15.0, 200.0 + 15 * open_)
        ir[c] = (x0 + 15.0 + 30.0 * shift_x, 200.0 + 30.0 * shift_y)
    return lm, ir


def test_iris_offsets_and_keys_round_trip():
    lm, ir = _eyes(0.1, -0.05)
    off, openness = gaze.eye_offsets(lm, ir)
    np.testing.assert_allclose(off, [[0.1, -0.05], [0.1, -0.05]], atol=1e-9)
    np.testing.assert_allclose(openness, [0.3, 0.3], atol=1e-9)
    ang = np.radians([[12.0, -8.0], [10.0, 5.0]])       # [eye right, left][yaw left, pitch down]
    keys = gaze.angles_to_keys(ang, NAMES)
    assert keys[NAMES.index("eyeLookOutLeft")] > 0 and keys[NAMES.index("eyeLookInRight")] > 0
    assert keys[NAMES.index("eyeLookInLeft")] == 0 and keys[NAMES.index("eyeBlinkLeft")] == 0
    np.testing.assert_allclose(gaze.keys_to_angles(keys, NAMES), ang, atol=1e-6)


def test_estimator_subtracts_the_clip_neutral_and_holds_closed_eyes():
    est = gaze.GazeEstimator(neutral_frames=3)
    for _ in range(3):                                   # the person's resting gaze: 0.05 up
        a0 = est.update(*_eyes(0.0, -0.05))
    np.testing.assert_allclose(a0, 0.0, atol=1e-9)
    a = est.update(*_eyes(0.12, -0.05))                  # looks to the left
    np.testing.assert_allclose(a[:, 0], np.arcsin(0.12 / gaze.EYEBALL_RADIUS_EW), atol=1e-9)
    np.testing.assert_allclose(a[:, 1], 0.0, atol=1e-9)
    closed = est.update(*_eyes(-0.3, 0.2, open_=0.05))   # lids shut: iris unreliable -> held
    np.testing.assert_allclose(closed, a)
    np.testing.assert_allclose(est.update(_eyes()[0], None), a)


def test_detector_gives_iris_landmarks_on_a_real_frame(d0_first_frame):
    _, d = d0_first_frame
    ir = d.extras["iris_landmarks_px"]
    assert ir.shape == (10, 3) and np.isfinite(ir).all()
    off, openness = gaze.eye_offsets(d.face_landmarks.astype(np.float64), ir.astype(np.float64))
    assert (np.abs(off) < 0.25).all() and (openness > 0.15).all()     # irises inside open eyes


bpy = pytest.importorskip("bpy")


def test_blender_eyes_parented_to_head_and_turned_by_the_gaze(tmp_path):
    import blender_helpers as H
    from fullbody_addon import avatar, face_rig, importer
    from fullbody_addon.avatar_data import avatar_data_from_capture
    from model_runtime.core.capture_file import load_capture
    from model_runtime.models.face_model import load_builtin_face

    face = load_builtin_face()
    cap = load_capture(H.write_capture(tmp_path / "g.npz", T=5, seed=3, expression_names=face.exp_names))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    data = avatar_data_from_capture(cap)
    assert data.eyes is not None and data.eyes.shape == (2, 4)
    assert data.eyes[0, 0] < 0 < data.eyes[1, 0]          # person's right eye at -X, left at +X
    # inside the head: no mesh vertex within the eyeball, the lids in front of it
    v = data.vertices
    for e in data.eyes:
        assert np.linalg.norm(v - e[:3], axis=1).min() > 0.9 * e[3]
    arm, mesh = avatar.create_avatar(data, name="G")
    eyes = face_rig.find_eyes(arm)
    assert [o.parent_bone for o in eyes] == ["head", "head"] and all(o.parent == arm for o in eyes)
    bpy.context.view_layer.update()
    np.testing.assert_allclose([list(o.matrix_world.translation) for o in eyes], data.eyes[:, :3], atol=1e-5)
    importer.apply_capture(bpy.context.scene, arm, mesh, cap, importer.ImportOptions(frame_start=1))
    want = gaze.keys_to_angles(cap["face_expression"], [str(n) for n in cap["expression_names"]])
    for t in (0, 3):
        bpy.context.scene.frame_set(1 + t)
        for k, o in enumerate(eyes):
            np.testing.assert_allclose([o.rotation_euler.z, o.rotation_euler.x], want[t, k], atol=1e-5)
    # they move with the head bone: the world centre follows the posed head
    head = arm.pose.bones["head"]
    bpy.context.scene.frame_set(4)
    bpy.context.view_layer.update()
    rel = np.array(head.matrix.inverted() @ arm.matrix_world.inverted() @ eyes[0].matrix_world.translation)
    rest = np.array(arm.data.bones["head"].matrix_local.inverted() @ __import__("mathutils").Vector(data.eyes[0, :3]))
    np.testing.assert_allclose(rel, rest, atol=1e-4)
