"""Scene settings (saved with the .blend) and window-manager status (not saved, no undo)."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty


class FULLBODY_PG_settings(bpy.types.PropertyGroup):
    source_type: EnumProperty(name="Source", items=[
        ("VIDEO", "Video", "A video file"),
        ("CAMERA", "Camera", "A camera by index (live or recorded capture)"),
        ("FOLDER", "Image Folder", "A folder of images, in name order"),
    ], default="VIDEO")
    video_path: StringProperty(name="Video", subtype="FILE_PATH")
    camera_index: IntProperty(name="Camera", min=0, max=63, default=0)
    image_folder: StringProperty(name="Folder", subtype="DIR_PATH")
    frame_start: IntProperty(name="First Frame", min=0, default=0, description="First source frame to capture")
    frame_end: IntProperty(name="Last Frame", min=-1, default=-1, description="Last source frame (-1: to the end)")
    body_model: EnumProperty(name="Body Model", items=[
        ("BUILTIN", "Built-in", "The built-in body model shipped with the extension"),
        ("SMPLH", "SMPL-H File", "An official SMPL-H model file (.npz/.pkl)"),
    ], default="BUILTIN")
    smplh_path: StringProperty(name="SMPL-H File", subtype="FILE_PATH")
    face_model: EnumProperty(name="Face Model", items=[
        ("BUILTIN", "Built-in", "The built-in face model (ARKit-named expressions)"),
        ("BFM", "BFM File", "A Basel Face Model file (.mat)"),
    ], default="BUILTIN")
    bfm_path: StringProperty(name="BFM File", subtype="FILE_PATH")
    smoothing: FloatProperty(name="Smoothing", min=0.0, max=1.0, default=0.5,
                             description="Temporal smoothing strength (One Euro filter; 0 = raw)")
    hands: BoolProperty(name="Hands", default=True)
    face: BoolProperty(name="Face", default=True)
    feet: BoolProperty(name="Foot Contacts", default=True,
                       description="Estimate foot contacts and the ground plane and lock planted feet in the runtime "
                                   "(frames are written as they come and rewritten once locked)")
    root_translation: BoolProperty(name="Root Translation", default=True,
                                   description="Move the root through space (off: animation in place)")
    key_unseen: BoolProperty(name="Key Unseen Parts", default=True,
                             description="Key the held or neutral pose the capture gives the parts the camera did "
                                         "not see (off: those bones get no rotation key on those frames; each bone's "
                                         "'confidence' property says what was seen)")
    lock_feet: BoolProperty(name="Lock Feet", default=True,
                            description="Add a foot-lock rig: IK on the shins towards empties that stand still while "
                                        "the capture says a foot is planted (influence keyed from its contact labels; "
                                        "the armature's 'foot_lock' property switches it off again)")
    neutral_face: BoolProperty(name="Neutral Face", default=True,
                               description="Move the expression the face holds all clip long (e.g. naturally wide eyes) "
                                           "into the avatar's face shape and key the shape keys relative to it: the same "
                                           "face in Blender, curves a retargeted character can use (off: the capture's "
                                           "values as they are)")
    ground_plane: BoolProperty(name="Ground Plane", default=True,
                               description="Add a plane object on the ground the capture estimated from the planted feet")
    fps: FloatProperty(name="Frame Rate", min=0.0, max=240.0, default=0.0,
                       description="Frame rate of the capture (0: from the source video)")
    output_dir: StringProperty(name="Capture Folder", subtype="DIR_PATH",
                               description="Where capture .npz files are written (empty: next to the .blend, "
                                           "or the temporary folder)")


class FULLBODY_PG_status(bpy.types.PropertyGroup):
    running: BoolProperty(default=False)
    live: BoolProperty(default=False)
    recording: BoolProperty(name="Record", default=False, description="Write keyframes while the live capture runs")
    progress: FloatProperty(subtype="PERCENTAGE", min=0.0, max=100.0, default=0.0)
    message: StringProperty(default="")
    error: StringProperty(default="")
    latency_ms: FloatProperty(default=0.0)
    health: StringProperty(default="")
    setup_running: BoolProperty(default=False)
    setup_progress: FloatProperty(subtype="PERCENTAGE", min=0.0, max=100.0, default=0.0)
    setup_message: StringProperty(default="")


CLASSES = (FULLBODY_PG_settings, FULLBODY_PG_status)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.Scene.fullbody = bpy.props.PointerProperty(type=FULLBODY_PG_settings)
    bpy.types.WindowManager.fullbody_status = bpy.props.PointerProperty(type=FULLBODY_PG_status)


def unregister() -> None:
    del bpy.types.WindowManager.fullbody_status
    del bpy.types.Scene.fullbody
    _unregister_classes()
