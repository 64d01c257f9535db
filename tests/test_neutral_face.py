"""The clip's resting expression (``model_runtime.face.neutral``) and the add-on's *Neutral Face* import
in real Blender (bpy as a module): the keys a face holds all clip long move into the mesh, the shape keys
are keyed relative to them, and the posed face stays the same vertex for vertex."""
from __future__ import annotations

import numpy as np
import pytest

from model_runtime.face import neutral


def test_rest_levels_skip_faceless_frames_and_gaze():
    rng = np.random.default_rng(0)
    names = ["eyeWideLeft", "jawOpen", "eyeLookInLeft", "mouthClose"]
    T = 200
    e = np.zeros((T, 4))
    e[:, 0] = 0.4 + 0.1 * rng.random(T)              # always wide: its floor is the rest
    e[:, 1] = rng.random(T) * (rng.random(T) > 0.5)   # talking: closes half the time
    e[:, 2] = 0.3                                     # a steady gaze is a direction, not a shape
    e[:, 3] = 0.01                                    # noise level
    e[150:] = 0.0                                     # frames without a face
    rest = neutral.rest_expression(e, names)
    assert rest.dtype == np.float32 and rest.shape == (4,)
    assert 0.40 <= rest[0] <= 0.42                    # the 10th percentile of the face frames only
    assert rest[1] == 0.0 and rest[2] == 0.0 and rest[3] == 0.0
    valid = np.zeros(T, bool)
    valid[:5] = True                                  # too few frames with a person: nothing
    assert not neutral.rest_expression(e, names, valid).any()
    with pytest.raises(ValueError, match="face_expression"):
        neutral.rest_expression(e[:, :3], names)
    e[3, 0] = np.nan                                  # a corrupt row is not a face frame
    assert neutral.face_frames(e).sum() == 149


def _posed_vertices(bpy, mesh, frame: int) -> np.ndarray:
    bpy.context.scene.frame_set(frame)
    dg = bpy.context.evaluated_depsgraph_get()
    me = mesh.evaluated_get(dg).data
    co = np.empty(3 * len(me.vertices), np.float32)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def _basis(mesh) -> np.ndarray:
    co = np.empty(3 * len(mesh.data.vertices), np.float32)
    mesh.data.shape_keys.reference_key.data.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_blender_neutral_face_keeps_the_posed_face_and_keys_relative_values(tmp_path):
    import blender_helpers as H
    import bpy

    from fullbody_addon import avatar, face_rig, importer
    from fullbody_addon.avatar_data import avatar_data_from_capture
    from model_runtime.core.capture_file import load_capture
    from model_runtime.models.face_model import load_builtin_face

    face = load_builtin_face()
    cap = load_capture(H.write_capture(tmp_path / "n.npz", T=12, seed=5, expression_names=face.exp_names))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    arm, mesh = avatar.create_avatar(avatar_data_from_capture(cap), name="N")
    basis0 = _basis(mesh)
    importer.apply_capture(bpy.context.scene, arm, mesh, cap, importer.ImportOptions(frame_start=1))
    raw = [_posed_vertices(bpy, mesh, f) for f in (1, 7)]
    assert face_rig.REST_PROPERTY not in mesh

    names = [str(n) for n in cap["expression_names"]]
    rest = neutral.rest_expression(cap["face_expression"], names)
    assert (rest > 0.05).sum() > 30                   # uniform(0, 1) keys: every shape key has a floor
    for _ in range(2):                                # importing twice does not add the rest twice
        importer.apply_capture(bpy.context.scene, arm, mesh, cap, importer.ImportOptions(frame_start=1, neutral_face=True))
        for f, want in zip((1, 7), raw):
            np.testing.assert_allclose(_posed_vertices(bpy, mesh, f), want, atol=2e-5)
    stored = dict(mesh[face_rig.REST_PROPERTY])
    assert set(stored) == {n for n, r in zip(names, rest) if r != 0}
    moved = np.abs(_basis(mesh) - basis0).max()
    assert moved > 1e-3                               # the mesh's own shape holds the rest now
    kb = mesh.data.shape_keys.key_blocks
    i = int(np.argmax(rest))
    bpy.context.scene.frame_set(7)
    assert kb[names[i]].value == pytest.approx(float(cap["face_expression"][6, i] - rest[i]), abs=1e-5)
    eye = names.index("eyeLookInLeft")
    assert kb[names[eye]].value == pytest.approx(float(cap["face_expression"][6, eye]), abs=1e-5)

    importer.apply_capture(bpy.context.scene, arm, mesh, cap, importer.ImportOptions(frame_start=1))
    np.testing.assert_allclose(_basis(mesh), basis0, atol=2e-5)     # off again: the mesh as it was
    assert face_rig.REST_PROPERTY not in mesh
    np.testing.assert_allclose(_posed_vertices(bpy, mesh, 7), raw[1], atol=2e-5)
