"""Operators (``bpy.ops.fullbody.*``): the boundary where errors become ``self.report``.

Scene-changing operators have undo.  Validation happens before anything is
created, so a bad file leaves the scene as it was.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import avatar, axes, convert, face_rig, footage, importer, preferences, runtime_setup, session
from ._runtime import camera_source, capture_file, errors, load_body_model, options, protocol, skeleton
from .avatar_data import avatar_data_from_capture
from .runtime_client import CaptureJob, HealthCheck, RuntimeNotSetUp, serve_argv, check_interpreter


# --- helpers -------------------------------------------------------------------------------
def _body_spec(settings) -> str | None:
    if settings.body_model == "SMPLH":
        return bpy.path.abspath(settings.smplh_path)
    return None


def _face_spec(settings) -> str | None | bool:
    """BFM path, None for the built-in face, False when the Face option is off (body-only avatar)."""
    if not settings.face:
        return False
    if settings.face_model == "BFM":
        return bpy.path.abspath(settings.bfm_path)
    return None


def load_capture_checked(path: str):
    """:func:`capture_file.load_capture` with the file named in every error."""
    return capture_file.load_capture(path)


def neutral_capture():
    """Mean shape, neutral face, mean albedo: what an avatar is made of without a capture."""
    return capture_file.Capture(path=Path("<neutral>"), data={"betas": np.zeros(16, np.float32)})


def betas_match(arm_obj, betas: np.ndarray, tol: float = 1e-4) -> bool:
    cur = np.asarray(arm_obj.get("betas", []), np.float64)
    b = np.asarray(betas, np.float64).reshape(-1)
    n = min(len(cur), len(b))
    return n > 0 and np.allclose(cur[:n], b[:n], atol=tol) and np.allclose(b[n:], 0, atol=tol)


#: datablock collections an import may add to; :class:`SceneTransaction` removes what a failed one added
_DATA_KINDS = ("objects", "meshes", "armatures", "actions", "materials", "images", "collections",
               "cameras", "movieclips")


class SceneTransaction:
    """All or nothing: on an exception inside the ``with``, every datablock created since it began is
    removed and the animation of the objects given is restored, so the scene is as it was."""

    def __init__(self, *objects):
        self.objects = [o for o in objects if o is not None]

    def __enter__(self) -> "SceneTransaction":
        self.before = {k: set(getattr(bpy.data, k)) for k in _DATA_KINDS}
        self.actions = {o.name: (o.animation_data.action if o.animation_data else None) for o in self.objects}
        self.frames = (bpy.context.scene.frame_start, bpy.context.scene.frame_end)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            return False
        for name, action in self.actions.items():
            ob = bpy.data.objects.get(name)
            if ob is not None and ob.animation_data is not None:
                ob.animation_data.action = action
        for kind in _DATA_KINDS:   # objects first: their meshes/armatures are then unused
            coll = getattr(bpy.data, kind)
            for block in [b for b in coll if b not in self.before[kind]]:
                coll.remove(block)
        bpy.context.scene.frame_start, bpy.context.scene.frame_end = self.frames
        return False


def import_capture_into_scene(context, path: str, settings=None, create_new: bool = False,
                              camera: bool = False, video: str | None = None) -> dict:
    """Load ``path`` (recovering a partial capture), find or create the matching avatar, key it;
    ``camera``: also the capture camera, with the footage ``video`` behind it (:mod:`footage`).

    The capture is validated before the scene is touched, and the import is all or nothing
    (:class:`SceneTransaction`): on any error the scene is as it was."""
    settings = settings or context.scene.fullbody
    cap = load_capture_checked(path)  # raises ModelFileError before the scene is touched
    warnings: list[str] = list(cap.notes)
    arm = None if create_new else avatar.find_avatar(context)
    if arm is not None and not betas_match(arm, cap["betas"]):
        arm = None  # another person's shape: give this capture its own avatar
    mesh = avatar.avatar_mesh(arm) if arm is not None else None
    data = None
    if arm is None:   # everything that can fail on the model files happens before the scene changes
        data = avatar_data_from_capture(cap, body=load_body_model(_body_spec(settings)),
                                        face=_face_spec(settings), runtime_python=preferences.runtime_python(context))
        warnings.extend(data.warnings)
    opts = importer.ImportOptions(frame_start=context.scene.frame_start,
                                  root_translation=settings.root_translation, key_unseen=settings.key_unseen,
                                  lock_feet=settings.lock_feet, ground_plane=settings.ground_plane,
                                  neutral_face=settings.neutral_face)
    with SceneTransaction(arm, mesh):
        if data is not None:
            arm, mesh = avatar.create_avatar(data, name=Path(path).stem)
        summary = importer.apply_capture(context.scene, arm, mesh, cap, opts)
        if camera:
            summary["camera"] = footage.setup_capture_camera(context.scene, cap, footage=video or None,
                                                             frame_start=opts.frame_start).name
            summary["lens"] = camera_source.describe_camera(cap["camera_K"], cap["image_size"], str(cap["camera_source"]))
    summary["armature"] = arm.name
    summary["warnings"] = warnings
    if cap.num_frames:
        context.scene.frame_set(opts.frame_start)
    return summary


def capture_output_path(settings) -> Path:
    base = bpy.path.abspath(settings.output_dir) if settings.output_dir else ""
    if not base:
        base = bpy.path.abspath("//captures") if bpy.data.filepath else os.path.join(tempfile.gettempdir(), "fullbody_captures")
    Path(base).mkdir(parents=True, exist_ok=True)
    return Path(base) / time.strftime("capture_%Y%m%d_%H%M%S.npz")


def capture_options(settings, prefs) -> "options.CaptureOptions":
    """The panel's settings as the runtime's typed :class:`~model_runtime.core.options.CaptureOptions`
    (validated here: a bad value is reported before the runtime starts).  ``frame_end`` is the
    last frame to capture, inclusive (the runtime's ``end`` is exclusive)."""
    defaults = options.CaptureOptions()
    return options.CaptureOptions(
        start=int(settings.frame_start),
        end=None if settings.frame_end < 0 else int(settings.frame_end) + 1,
        device=prefs.device if prefs is not None else defaults.device,
        body_model=_body_spec(settings) or "builtin",
        face_model=(_face_spec(settings) or "builtin") if settings.face else "builtin",
        smoothing=options.SmoothingConfig.from_strength(float(settings.smoothing)),
        hands=bool(settings.hands),
        face=bool(settings.face),
        feet=bool(settings.feet),
        folder_fps=float(settings.fps) if settings.fps > 0 else defaults.folder_fps,
    )


def capture_source(settings):
    """The request's ``source``; raises ValueError naming the missing field."""
    if settings.source_type == "VIDEO":
        p = bpy.path.abspath(settings.video_path)
        if not settings.video_path or not Path(p).is_file():
            raise ValueError(f"video file '{p or '(none)'}' does not exist (Source > Video)")
        return p
    if settings.source_type == "FOLDER":
        p = bpy.path.abspath(settings.image_folder)
        if not settings.image_folder or not Path(p).is_dir():
            raise ValueError(f"image folder '{p or '(none)'}' does not exist (Source > Folder)")
        return p
    return int(settings.camera_index)


# --- avatar and import ---------------------------------------------------------------------
class FULLBODY_OT_create_avatar(bpy.types.Operator):
    """Create the avatar: 52-bone SMPL-H armature and the skinned body + face mesh"""

    bl_idname = "fullbody.create_avatar"
    bl_label = "Create Avatar"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Capture", subtype="FILE_PATH",
                             description="Take shape, face identity and albedo from this capture (empty: mean shape)")

    def execute(self, context):
        settings = context.scene.fullbody
        try:
            body = load_body_model(_body_spec(settings))
            cap = load_capture_checked(bpy.path.abspath(self.filepath)) if self.filepath else neutral_capture()
            data = avatar_data_from_capture(cap, body=body, face=_face_spec(settings),
                                            runtime_python=preferences.runtime_python(context))
        except (errors.RuntimeErrorBase, RuntimeNotSetUp, OSError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        arm, _ = avatar.create_avatar(data, name=Path(self.filepath).stem if self.filepath else "FullBody")
        for w in data.warnings:
            self.report({"WARNING"}, w)
        for ob in context.view_layer.objects:
            ob.select_set(False)
        arm.select_set(True)
        context.view_layer.objects.active = arm
        self.report({"INFO"}, f"created avatar '{arm.name}' ({len(data.vertices)} vertices, "
                              f"{len(data.shape_key_names)} shape keys)")
        return {"FINISHED"}


class FULLBODY_OT_import_capture(bpy.types.Operator, ImportHelper):
    """Import a capture .npz onto the avatar (creating one if there is none)"""

    bl_idname = "fullbody.import_capture"
    bl_label = "Import Capture"
    bl_options = {"REGISTER", "UNDO"}
    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    footage: StringProperty(name="Footage", subtype="FILE_PATH",
                            description="The captured video, shown behind the capture camera")
    camera: BoolProperty(name="Camera", default=False,
                         description="Add the capture camera (matches the capture's lens; on when footage is given)")

    def invoke(self, context, event):
        s = context.scene.fullbody
        video = bpy.path.abspath(s.video_path) if s.source_type == "VIDEO" and s.video_path else ""
        if not self.footage and video and Path(video).is_file():
            self.footage = video
        return super().invoke(context, event)

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        video = bpy.path.abspath(self.footage) if self.footage else None
        camera = self.camera if self.properties.is_property_set("camera") else bool(video)
        try:
            summary = import_capture_into_scene(context, path, camera=camera, video=video)
        except (errors.RuntimeErrorBase, RuntimeNotSetUp, OSError, ValueError, KeyError) as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        for w in summary["warnings"]:
            self.report({"WARNING"}, w)
        if summary.get("track_breaks"):
            self.report({"WARNING"}, f"the capture switches person (or the shot cuts) at frame(s) "
                                     f"{', '.join(map(str, summary['track_breaks']))}: marked '{importer.TRACK_MARKER}' "
                                     f"on the timeline")
        self.report({"INFO"}, f"imported {summary['frames']} frames onto '{summary['armature']}' "
                              f"({summary['shape_keys']} shape keys)"
                              + (f", camera '{summary['camera']}' ({summary['lens']})" if "camera" in summary else ""))
        return {"FINISHED"}


# --- capture -------------------------------------------------------------------------------
def _on_capture_finished(job: CaptureJob) -> None:
    def do_import(path):
        summary = import_capture_into_scene(bpy.context, path)
        try:
            bpy.ops.ed.undo_push(message="Full Body Capture")
        except RuntimeError:
            pass
        return summary

    session.finish_capture(job, do_import)


class FULLBODY_OT_capture_video(bpy.types.Operator):
    """Capture the source in the background; Esc or Stop cancels and keeps what was captured"""

    bl_idname = "fullbody.capture_video"
    bl_label = "Capture"
    bl_options = {"REGISTER"}

    def _start(self, context) -> bool:
        settings = context.scene.fullbody
        try:
            source = capture_source(settings)
            client = session.new_client(preferences.runtime_python(context))
            out = capture_output_path(settings)
            req = protocol.request("capture", source=source, output=str(out),
                                   options=capture_options(settings, preferences.prefs(context)).to_mapping())
            session.start_job(CaptureJob(client, req, on_finish=_on_capture_finished))
        except (RuntimeNotSetUp, ValueError, RuntimeError, errors.RuntimeErrorBase) as e:
            session.status(context).error = str(e)
            self.report({"ERROR"}, str(e))
            return False
        self.report({"INFO"}, f"capturing to {out}")
        return True

    def execute(self, context):
        return {"FINISHED"} if self._start(context) else {"CANCELLED"}

    def invoke(self, context, event):
        if not self._start(context):
            return {"CANCELLED"}
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if session.active_job() is None:
            return {"FINISHED"}
        if event.type == "ESC" and event.value == "PRESS":
            session.stop_job()
            self.report({"WARNING"}, "capture cancelled; what was captured is imported")
            return {"FINISHED"}
        return {"PASS_THROUGH"}


class FULLBODY_OT_stop_capture(bpy.types.Operator):
    """Stop the running capture (what was captured is imported)"""

    bl_idname = "fullbody.stop_capture"
    bl_label = "Stop"

    @classmethod
    def poll(cls, context):
        return session.active_job() is not None

    def execute(self, context):
        session.stop_job()
        return {"FINISHED"}


class LiveDriver:
    """Applies ``frame`` events to an avatar; buffers them while Record is on and keys them when it ends."""

    def __init__(self, arm_obj, mesh_obj):
        self.arm_name = arm_obj.name
        self.mesh_name = mesh_obj.name if mesh_obj else None
        self.recorded: list[dict] = []
        self.order: np.ndarray | None = None
        self.record_start = bpy.context.scene.frame_current

    def on_frame(self, ev: dict) -> None:
        arm = bpy.data.objects.get(self.arm_name)
        if arm is None:
            return
        st = session.status()
        if ev.get("valid", True):
            self.apply(arm, ev)
        if st.recording:
            self.recorded.append(ev)
        elif self.recorded:
            self.flush()

    def apply(self, arm, ev: dict) -> None:
        rest = avatar.bone_rest_matrices(arm)
        if self.order is None:
            self.order = importer.bone_order(arm, ev.get("joint_names") or skeleton.JOINT_NAMES)
        pose = np.asarray(ev["pose_6d"], np.float64).reshape(1, 52, 6)[:, self.order]
        scale = float(ev.get("scale") or 1.0)
        ch = convert.bone_channels(pose, np.asarray(ev["transl"], np.float64).reshape(1, 3), rest[:, :3, :3],
                                   rest[0, :3, 3], np.asarray(arm["rest_root_model"]), scale=scale,
                                   root_translation=bpy.context.scene.fullbody.root_translation)
        arm.scale = (scale,) * 3
        arm.pose.bones.foreach_set("rotation_quaternion", ch.quaternions[0].astype(np.float32).ravel())
        arm.pose.bones[0].location = ch.root_location[0]
        mesh = bpy.data.objects.get(self.mesh_name) if self.mesh_name else None
        expr = ev.get("expression")
        if mesh is not None and mesh.data.shape_keys is not None and expr:
            kbs = mesh.data.shape_keys.key_blocks
            vals = np.empty(len(kbs), np.float32)
            kbs.foreach_get("value", vals)
            n = min(len(expr), len(kbs) - 1)
            vals[1:1 + n] = np.asarray(expr[:n], np.float32)
            kbs.foreach_set("value", vals)
        arm.update_tag()

    def flush(self) -> None:
        """Key the recorded frames (bulk) from the frame where Record was turned on."""
        arm = bpy.data.objects.get(self.arm_name)
        if arm is None or not self.recorded:
            self.recorded = []
            return
        evs, self.recorded = self.recorded, []
        T = len(evs)
        mesh = bpy.data.objects.get(self.mesh_name) if self.mesh_name else None
        E = len(evs[0].get("expression") or [])
        exp_names = [kb.name for kb in mesh.data.shape_keys.key_blocks[1:1 + E]] if mesh and mesh.data.shape_keys else []
        data = {
            "pose_6d": np.asarray([e["pose_6d"] for e in evs], np.float32).reshape(T, 52, 6),
            "transl": np.asarray([e["transl"] for e in evs], np.float32).reshape(T, 3),
            "joint_names": np.asarray(evs[0].get("joint_names") or skeleton.JOINT_NAMES), "scale": np.float32(evs[-1].get("scale") or 1.0),
            "fps": np.float32(bpy.context.scene.render.fps / bpy.context.scene.render.fps_base),
            "expression_names": np.asarray(exp_names, dtype=str),
            "face_expression": np.asarray([(e.get("expression") or [])[:len(exp_names)] for e in evs], np.float32).reshape(T, len(exp_names)),
        }
        cap = capture_file.Capture(path=Path("<live>"), data=data)
        importer.apply_capture(bpy.context.scene, arm, mesh, cap,
                               importer.ImportOptions(frame_start=self.record_start, set_scene=False,
                                                      root_translation=bpy.context.scene.fullbody.root_translation))
        self.record_start += T


class FULLBODY_OT_live_capture(bpy.types.Operator):
    """Drive the avatar live from the camera (or stream the video/folder source); toggle Record to write keyframes"""

    bl_idname = "fullbody.live_capture"
    bl_label = "Live"
    bl_options = {"REGISTER"}

    def execute(self, context):
        settings = context.scene.fullbody
        # everything that can fail without touching the scene comes first: runtime, source, options
        try:
            client = session.new_client(preferences.runtime_python(context))
            source = capture_source(settings)
            opts = capture_options(settings, preferences.prefs(context)).to_mapping()
            if session.active_job() is not None:
                raise RuntimeError("a capture is already running: stop it first")
        except (RuntimeNotSetUp, ValueError, RuntimeError, errors.RuntimeErrorBase) as e:
            session.status(context).error = str(e)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        arm = avatar.find_avatar(context)
        if arm is None:
            bpy.ops.fullbody.create_avatar()
            arm = avatar.find_avatar(context)
        if arm is None:
            self.report({"ERROR"}, "could not create an avatar to drive")
            return {"CANCELLED"}
        driver = LiveDriver(arm, avatar.avatar_mesh(arm))

        def finished(job):
            driver.flush()
            if job.error:
                session.status().error = job.error

        # a camera index, or a video/folder streamed the same way (preview)
        req = (protocol.request("live", camera=source, options=opts) if isinstance(source, int)
               else protocol.request("live", source=source, options=opts))
        try:
            session.start_job(CaptureJob(client, req, on_finish=finished, on_frame=driver.on_frame), live=True)
        except (RuntimeNotSetUp, RuntimeError) as e:
            session.status(context).error = str(e)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        return {"FINISHED"}


# --- export --------------------------------------------------------------------------------
class FULLBODY_OT_export_fbx(bpy.types.Operator, ExportHelper):
    """Export the avatar (armature, mesh, shape keys, eyes with their gaze, animation) as FBX for Blender, Unity or Unreal"""

    bl_idname = "fullbody.export_fbx"
    bl_label = "Export FBX"
    filename_ext = ".fbx"
    filter_glob: StringProperty(default="*.fbx", options={"HIDDEN"})
    preset: EnumProperty(name="Target", items=[
        ("BLENDER", "Blender", "Z up, -Y forward, metres"),
        ("UNITY", "Unity", "Y up, transforms applied, FBX unit scale"),
        ("UNREAL", "Unreal", "FBX unit scale (centimetres in Unreal), no leaf bones"),
    ], default="BLENDER")

    def execute(self, context):
        arm = avatar.find_avatar(context)
        if arm is None:
            self.report({"ERROR"}, "no avatar in the scene: create one or import a capture first")
            return {"CANCELLED"}
        mesh = avatar.avatar_mesh(arm)
        prev_sel = [o for o in context.view_layer.objects if o.select_get()]
        prev_active = context.view_layer.objects.active
        for o in prev_sel:
            o.select_set(False)
        for o in (arm, mesh, *face_rig.find_eyes(arm)):       # the eyeballs: bone-parented, gaze keyed
            if o is not None:
                o.select_set(True)
        context.view_layer.objects.active = arm
        try:
            bpy.ops.export_scene.fbx(filepath=bpy.path.abspath(self.filepath), **fbx_export_settings(self.preset))
        except RuntimeError as e:
            self.report({"ERROR"}, f"FBX export failed: {e}")
            return {"CANCELLED"}
        finally:
            for o in context.view_layer.objects:
                o.select_set(o in prev_sel)
            context.view_layer.objects.active = prev_active
        self.report({"INFO"}, f"exported {self.filepath} ({self.preset})")
        return {"FINISHED"}


def fbx_export_settings(preset: str) -> dict:
    """Arguments of ``bpy.ops.export_scene.fbx`` for a target (axes/scale from :data:`axes.FBX_PRESETS`)."""
    return dict(
        use_selection=True, object_types={"ARMATURE", "MESH"}, add_leaf_bones=False,
        primary_bone_axis="Y", secondary_bone_axis="X", use_armature_deform_only=True,
        bake_anim=True, bake_anim_use_all_bones=True, bake_anim_use_nla_strips=False,
        bake_anim_use_all_actions=False, bake_anim_force_startend_keying=True, bake_anim_simplify_factor=0.0,
        use_mesh_modifiers=False, mesh_smooth_type="FACE", use_custom_props=False,
        **axes.FBX_PRESETS[preset],
    )


# --- runtime -------------------------------------------------------------------------------
class FULLBODY_OT_setup_runtime(bpy.types.Operator):
    """Create a virtual environment in the extension's user folder and install the pinned runtime (needs internet)"""

    bl_idname = "fullbody.setup_runtime"
    bl_label = "Set up Runtime"

    def execute(self, context):
        p = preferences.prefs(context)
        venv = Path(bpy.path.abspath(p.venv_dir)) if p is not None and p.venv_dir else preferences.default_venv_dir()
        try:
            steps = runtime_setup.setup_steps(venv)
        except FileNotFoundError as e:
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        session.start_setup(runtime_setup.SetupJob(steps=steps, log_path=venv.parent / "runtime-setup.log"))
        self.report({"INFO"}, f"setting up the runtime in {venv}; the log is the text block '{session.SETUP_LOG_TEXT}'")
        return {"FINISHED"}


class FULLBODY_OT_setup_runtime_cancel(bpy.types.Operator):
    """Stop the runtime setup"""

    bl_idname = "fullbody.setup_runtime_cancel"
    bl_label = "Cancel Setup"

    def execute(self, context):
        session.cancel_setup()
        return {"FINISHED"}


class FULLBODY_OT_health_check(bpy.types.Operator):
    """Start the runtime and show its versions, torch device and detector status"""

    bl_idname = "fullbody.health_check"
    bl_label = "Health Check"

    def execute(self, context):
        try:
            python = check_interpreter(preferences.runtime_python(context))
        except RuntimeNotSetUp as e:
            session.status(context).health = f"Runtime not set up: {e}"
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        session.start_health(HealthCheck(serve_argv(python)))
        return {"FINISHED"}


CLASSES = (
    FULLBODY_OT_create_avatar, FULLBODY_OT_import_capture, FULLBODY_OT_capture_video, FULLBODY_OT_stop_capture,
    FULLBODY_OT_live_capture, FULLBODY_OT_export_fbx, FULLBODY_OT_setup_runtime, FULLBODY_OT_setup_runtime_cancel,
    FULLBODY_OT_health_check,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
