"""FBX round trip: export the captured avatar, import it into an empty scene, compare."""
from __future__ import annotations


import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import blender_helpers as H  # noqa: E402
import fullbody_addon  # noqa: E402
from fullbody_addon import avatar, avatar_data, importer  # noqa: E402
from model_runtime.core.capture_file import load_capture  # noqa: E402

EXPRESSIONS = ("jawOpen", "eyeBlinkLeft", "mouthSmileRight")
FRAMES = (1, 9, 20)


def bone_world(arm) -> dict[str, np.ndarray]:
    return {pb.name: np.array(arm.matrix_world @ pb.matrix) for pb in arm.pose.bones}


def sample(arm, mesh) -> list[tuple[dict, dict]]:
    scene = bpy.context.scene
    out = []
    for f in FRAMES:
        scene.frame_set(f)
        keys = {kb.name: kb.value for kb in mesh.data.shape_keys.key_blocks[1:]}
        out.append((bone_world(arm), keys))
    return out


@pytest.mark.parametrize("preset", ["BLENDER", "UNITY", "UNREAL"])
def test_fbx_round_trip_preserves_bones_and_shape_key_animation(addon, tmp_path, preset):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    cap_path = H.write_capture(tmp_path / "c.npz", T=20, seed=9, scale=1.05, expression_names=EXPRESSIONS)
    cap = load_capture(cap_path)
    data = avatar_data.avatar_data_from_body(H.synthetic_body_model(), cap["betas"])
    H.add_test_expressions(data, EXPRESSIONS)
    arm, mesh = avatar.create_avatar(data, name="Actor")
    importer.apply_capture(bpy.context.scene, arm, mesh, cap)
    bpy.context.view_layer.objects.active = arm
    before = sample(arm, mesh)
    out = tmp_path / f"actor_{preset.lower()}.fbx"
    assert bpy.ops.fullbody.export_fbx(filepath=str(out), preset=preset) == {"FINISHED"}
    assert out.stat().st_size > 10_000

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(out), automatic_bone_orientation=False, primary_bone_axis="Y",
                             secondary_bone_axis="X", use_anim=True, anim_offset=0.0, **({"axis_forward": "-Z", "axis_up": "Y"}
                                                                         if preset == "UNITY" else {}))
    arm2 = next(o for o in bpy.data.objects if o.type == "ARMATURE")
    mesh2 = next(o for o in bpy.data.objects if o.type == "MESH")
    assert len(mesh2.data.shape_keys.key_blocks) == 1 + len(EXPRESSIONS)
    after = sample(arm2, mesh2)
    for f, ((bw0, k0), (bw1, k1)) in zip(FRAMES, zip(before, after)):
        assert bw0.keys() == bw1.keys()
        err = max(np.abs(bw0[n] - bw1[n]).max() for n in bw0)
        assert err < 1e-3, f"frame {f}: bone world matrices differ by {err:.2e}"
        assert k0.keys() == k1.keys()
        np.testing.assert_allclose([k1[n] for n in k0], [k0[n] for n in k0], atol=1e-3, err_msg=f"frame {f}")


def test_fbx_carries_the_eyes_and_their_gaze(addon, tmp_path):
    """The eyeballs (bone-parented to ``head``) are exported with the avatar, their gaze as keyed local
    rotations (read back with Blender's own FBX parser: its importer drops the animation of
    bone-parented objects, game engines read it)."""
    from io_scene_fbx import parse_fbx

    from fullbody_addon import face_rig
    from model_runtime.models.face_model import load_builtin_face

    bpy.ops.wm.read_factory_settings(use_empty=True)
    face = load_builtin_face()
    cap = load_capture(H.write_capture(tmp_path / "g.npz", T=12, seed=4, expression_names=face.exp_names))
    data = avatar_data.avatar_data_from_capture(cap)
    arm, mesh = avatar.create_avatar(data, name="Gaze")
    importer.apply_capture(bpy.context.scene, arm, mesh, cap, importer.ImportOptions(frame_start=1))
    bpy.context.view_layer.objects.active = arm
    out = tmp_path / "gaze.fbx"
    assert bpy.ops.fullbody.export_fbx(filepath=str(out), preset="UNITY") == {"FINISHED"}
    root, _ = parse_fbx.parse(str(out))
    objs = next(e for e in root.elems if e.id == b"Objects")
    conns = next(e for e in root.elems if e.id == b"Connections")
    name = {e.props[0]: (e.id, e.props[1].split(b"\x00")[0]) for e in objs.elems if len(e.props) > 1}
    eyes = {u for u, (kind, n) in name.items() if kind == b"Model" and n.decode() in {o.name for o in face_rig.find_eyes(arm)}}
    assert len(eyes) == 2
    rot_nodes = {c.props[1] for c in conns.elems if c.props[2] in eyes and c.props[3:] == [b"Lcl Rotation"]}
    assert len(rot_nodes) == 2
    spread = []
    for c in conns.elems:
        if c.props[2] in rot_nodes:
            curve = next(e for e in objs.elems if e.props[0] == c.props[1])
            keys = np.array(next(x for x in curve.elems if x.id == b"KeyValueFloat").props[0])
            assert len(keys) == 12
            spread.append(np.ptp(keys))
    assert max(spread) > 1.0                     # degrees: the gaze moves
