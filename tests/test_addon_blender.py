"""The add-on inside real Blender (bpy 5.0.1 as a module): avatar, import, bad input.

The decisive check: the mesh Blender poses (armature modifier, evaluated through
the depsgraph) equals the model layer's LBS for the same capture frame.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import blender_helpers as H  # noqa: E402
import fullbody_addon  # noqa: E402
from fullbody_addon import avatar, axes, convert  # noqa: E402
from model_runtime.core import rotations  # noqa: E402
from model_runtime.core.capture_file import load_capture  # noqa: E402

@pytest.fixture(scope="module")
def body_file(tmp_path_factory):
    body = H.synthetic_body_model()
    return body, H.write_smplh_npz(tmp_path_factory.mktemp("body") / "smplh_test.npz", body)


@pytest.fixture
def scene(addon, body_file):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    s = bpy.context.scene
    s.fullbody.body_model = "SMPLH"
    s.fullbody.face = False  # the test body has no face region: body-only avatar
    s.fullbody.smplh_path = str(body_file[1])
    bpy.context.window_manager.fullbody_status.error = ""
    return s


def world_vertices(obj) -> np.ndarray:
    """Evaluated (deformed) vertices ``(V, 3)`` of ``obj`` in world space."""
    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    co = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", co)
    ev.to_mesh_clear()
    mw = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]


@pytest.mark.parametrize("which", ["smplh_file", "builtin"])
def test_posed_mesh_equals_model_lbs(scene, body_file, tmp_path, which):
    body, _ = body_file
    if which == "builtin":
        from model_runtime.models.body_model import load_builtin_body

        body = load_builtin_body()
        scene.fullbody.body_model = "BUILTIN"
        scene.fullbody.face = False
    path = H.write_capture(tmp_path / "c.npz", T=24, seed=4, scale=1.1)
    assert bpy.ops.fullbody.import_capture(filepath=str(path)) == {"FINISHED"}
    cap = load_capture(path)
    arm = avatar.find_avatar(bpy.context)
    mesh = avatar.avatar_mesh(arm)
    for t in (0, 11, 23):
        scene.frame_set(scene.frame_start + t)
        R = rotations.rot6d_to_matrix(cap["pose_6d"][t:t + 1].astype(np.float64))
        v, _, _ = body.forward(cap["betas"][None].astype(np.float64), R, cap["transl"][t:t + 1].astype(np.float64),
                               np.array([1.1]))
        err = np.abs(world_vertices(mesh) - axes.camera_points_to_blender(v[0])).max()
        assert err < 1e-3, f"frame {t}: Blender mesh differs from LBS by {err * 1000:.3f} mm"


def test_merged_face_avatar_matches_full_model_with_expressions(scene, tmp_path):
    from model_runtime.models import full_model
    from model_runtime.models.body_model import load_builtin_body
    from model_runtime.models.face_model import load_builtin_face

    face = load_builtin_face()
    scene.fullbody.body_model = "BUILTIN"
    scene.fullbody.face = True
    path = H.write_capture(tmp_path / "f.npz", T=6, seed=5, expression_names=face.exp_names)
    assert bpy.ops.fullbody.import_capture(filepath=str(path)) == {"FINISHED"}
    cap = load_capture(path)
    mesh = avatar.avatar_mesh(avatar.find_avatar(bpy.context))
    assert len(mesh.data.shape_keys.key_blocks) == 1 + len(face.exp_names)
    assert mesh.data.color_attributes.get(avatar.COLOR_ATTRIBUTE) is not None
    full = full_model.build_full_model(load_builtin_body(), face)
    t = 3
    scene.frame_set(scene.frame_start + t)
    R = rotations.rot6d_to_matrix(cap["pose_6d"][t:t + 1].astype(np.float64))
    ident = np.zeros((1, face.sizes["identity"]))
    v, _ = full.forward(cap["betas"][None].astype(np.float64), R, ident,
                        cap["face_expression"][t:t + 1].astype(np.float64), cap["transl"][t:t + 1].astype(np.float64),
                        np.asarray(cap["scale"], np.float64).reshape(1))
    err = np.abs(world_vertices(mesh) - axes.camera_points_to_blender(v[0])).max()
    assert err < 1e-3, f"merged mesh differs from the full model by {err * 1000:.3f} mm"


def test_import_1000_frames_keys_every_channel(scene, tmp_path):
    path = H.write_capture(tmp_path / "long.npz", T=1000, seed=6, fps=29.97)
    t0 = time.perf_counter()
    assert bpy.ops.fullbody.import_capture(filepath=str(path)) == {"FINISHED"}
    elapsed = time.perf_counter() - t0
    arm = avatar.find_avatar(bpy.context)
    assert (scene.render.fps, round(scene.render.fps_base, 6)) == (30, round(30 / 29.97, 6))
    assert (scene.frame_start, scene.frame_end) == (1, 1000)
    bag = arm.animation_data.action.layers[0].strips[0].channelbag(arm.animation_data.action_slot)
    assert len(bag.fcurves) == 52 * 4 + 52 + 3       # quaternions, each bone's confidence, root location
    cap = load_capture(path)
    rest = avatar.bone_rest_matrices(arm)
    ch = convert.bone_channels(cap["pose_6d"], cap["transl"], rest[:, :3, :3], rest[0, :3, 3],
                               np.asarray(arm["rest_root_model"]), scale=1.0)
    b = 40  # a finger bone
    fc = bag.fcurves.find(f'pose.bones["{arm.data.bones[b].name}"].rotation_quaternion', index=2)
    co = np.empty(2000, np.float32)
    fc.keyframe_points.foreach_get("co", co)
    np.testing.assert_allclose(co[1::2], ch.quaternions[:, b, 2], atol=1e-6)
    assert all(k.interpolation == "LINEAR" for k in fc.keyframe_points[:5])
    print(f"1000-frame import: {elapsed:.2f} s")


def test_fps_and_range_follow_the_capture(scene, tmp_path):
    path = H.write_capture(tmp_path / "c25.npz", T=40, seed=1, fps=25.0)
    bpy.ops.fullbody.import_capture(filepath=str(path))
    assert (scene.render.fps, scene.render.fps_base, scene.frame_end) == (25, 1.0, 40)


def scene_counts() -> tuple[int, ...]:
    return tuple(len(getattr(bpy.data, k)) for k in ("objects", "meshes", "armatures", "actions", "materials"))


BAD_CAPTURES = {   # defect -> (change to a good capture's arrays, field the message must name)
    "version": (lambda d: d.update(version=np.int32(99)), "version"),
    "missing_key": (lambda d: d.pop("pose_6d"), "pose_6d"),
    "nan_pose": (lambda d: d["pose_6d"].__setitem__((2, 5, 1), np.nan), "pose_6d"),
    "inf_transl": (lambda d: d["transl"].__setitem__((0, 2), np.inf), "transl"),
    "zero_scale": (lambda d: d.update(scale=np.float32(0.0)), "scale"),
    "negative_scale": (lambda d: d.update(scale=np.float32(-1.0)), "scale"),
    "nan_scale": (lambda d: d.update(scale=np.float32(np.nan)), "scale"),
    "inf_fps": (lambda d: d.update(fps=np.float32(np.inf)), "fps"),
    "transl_T4": (lambda d: d.update(transl=np.zeros((len(d["valid"]), 4), np.float32)), "transl"),
    "joint_names": (lambda d: d.update(joint_names=np.array(["hips"] + [str(n) for n in d["joint_names"][1:]])),
                    "joint_names"),
    "object_array": (lambda d: d.update(betas=np.array([None, 1], dtype=object)), "betas"),
}


@pytest.mark.parametrize("defect", sorted(BAD_CAPTURES))
def test_bad_capture_is_reported_and_scene_untouched(scene, tmp_path, defect):
    """Issue 8.1/8.4: every defect is refused naming the file and field; nothing is added to the scene."""
    good = H.write_capture(tmp_path / "good.npz", T=5)
    with np.load(good) as z:
        d = {k: z[k] for k in z.files}
    change, field = BAD_CAPTURES[defect]
    change(d)
    bad = tmp_path / f"{defect}.npz"
    np.savez(bad, **d)
    before = scene_counts()
    with pytest.raises(RuntimeError) as ei:
        bpy.ops.fullbody.import_capture(filepath=str(bad))
    msg = str(ei.value)
    assert str(bad) in msg and field in msg, msg
    assert scene_counts() == before


def test_a_failing_import_removes_everything_it_created(scene, tmp_path):
    """The import's transaction: an error after the avatar was built leaves the scene as it was."""
    from fullbody_addon import operators
    from fullbody_addon.avatar_data import avatar_data_from_capture

    cap = load_capture(H.write_capture(tmp_path / "ok.npz", T=5))
    before = scene_counts()
    with pytest.raises(ZeroDivisionError):
        with operators.SceneTransaction():
            arm, mesh = avatar.create_avatar(avatar_data_from_capture(cap, face=False), name="doomed")
            assert scene_counts() != before
            1 / 0
    assert scene_counts() == before and bpy.data.objects.get("doomed") is None


def test_model_files_named_in_a_capture_are_never_opened(scene, tmp_path):
    """Issue 8.11: a capture naming /etc/passwd as its models gets the panel's models and a warning."""
    good = H.write_capture(tmp_path / "good.npz", T=5)
    with np.load(good) as z:
        d = {k: z[k] for k in z.files}
    d["body_model"], d["face_model"] = np.array("/etc/passwd"), np.array("/etc/passwd")
    np.savez(tmp_path / "named.npz", **d)
    from fullbody_addon import operators

    summary = operators.import_capture_into_scene(bpy.context, str(tmp_path / "named.npz"))
    assert summary["frames"] == 5
    assert any("/etc/passwd" in w and "pick that file" in w for w in summary["warnings"]), summary["warnings"]


def test_unfinished_capture_is_recovered_and_imported(scene, tmp_path):
    out = H.write_capture(tmp_path / "crashed.npz", T=70, finish=False)  # chunks on disk, never consolidated
    assert not out.exists()
    assert bpy.ops.fullbody.import_capture(filepath=str(out)) == {"FINISHED"}
    assert out.exists() and scene.frame_end == 70


def test_create_avatar_has_52_smplh_bones_weights_and_albedo_material(scene):
    assert bpy.ops.fullbody.create_avatar() == {"FINISHED"}
    arm = avatar.find_avatar(bpy.context)
    mesh = avatar.avatar_mesh(arm)
    from model_runtime.core.skeleton import JOINT_NAMES, PARENTS

    bones = arm.data.bones
    assert sorted(b.name for b in bones) == sorted(JOINT_NAMES)
    parents = [JOINT_NAMES.index(bones[n].parent.name) if bones[n].parent else -1 for n in JOINT_NAMES]
    assert parents == PARENTS.tolist()
    assert [g.name for g in mesh.vertex_groups] == list(JOINT_NAMES)
    assert all(pb.rotation_mode == "QUATERNION" for pb in arm.pose.bones)
    mod = mesh.modifiers["Armature"]
    assert mod.object == arm
    mat = mesh.data.materials[0]
    node = next(n for n in mat.node_tree.nodes if n.type == "VERTEX_COLOR")
    assert node.layer_name == avatar.COLOR_ATTRIBUTE and node.outputs["Color"].is_linked
    # undo support: the operator is registered with UNDO
    assert "UNDO" in bpy.ops.fullbody.create_avatar.bl_options


def test_capture_without_runtime_reports_setup_hint(scene, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00")
    scene.fullbody.source_type = "VIDEO"
    scene.fullbody.video_path = str(video)
    from fullbody_addon import preferences

    assert preferences.prefs() is None  # not enabled as an extension: default venv path, which does not exist
    before = sorted(o.name for o in bpy.data.objects)
    with pytest.raises(RuntimeError, match="Set up runtime"):
        bpy.ops.fullbody.capture_video()
    assert "Set up runtime" in bpy.context.window_manager.fullbody_status.error
    assert sorted(o.name for o in bpy.data.objects) == before
