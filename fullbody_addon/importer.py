"""Write a capture onto an avatar as keyframes (bulk ``keyframe_points.add`` + ``foreach_set``).

Bone channels come from :mod:`convert` (pure numpy); this module only moves the
arrays into Blender actions (layered actions, Blender 4.4+), sets the scene's
frame rate and range, and the armature object's scale to the capture's scale.

What the camera saw (capture file version 2, ``joint_confidence``): every pose bone gets a
custom property :data:`CONFIDENCE_PROPERTY` in [0, 1] keyed on every frame (0 = the camera
did not see the joint: its rotation is the held or neutral pose the capture put there).  With
:attr:`ImportOptions.key_unseen` off, a bone gets no rotation key on the frames where its
confidence is 0 (its F-curves interpolate over them).

Feet (:mod:`feet_lock`): with :attr:`ImportOptions.lock_feet` a capture with contact labels gets a
foot-lock rig (IK constraints on the shins, influence driven by the keyed contact and the
armature's ``foot_lock`` switch); with :attr:`ImportOptions.ground_plane` a plane object on the
capture's ground plane.  Neither changes the bones' keys.

Face: with :attr:`ImportOptions.neutral_face` the clip's resting expression (the keys a face holds all
the time, ``model_runtime.face.neutral``) is moved into the mesh (:func:`face_rig.set_rest_shape`) and
the shape keys are keyed relative to it: the same posed face, curves a retargeted character can use.
Off, an earlier import's resting expression is taken out of the mesh again.
"""
from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from . import convert, face_rig, feet_lock
from .avatar import bone_rest_matrices

LINEAR = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value
#: the pose bones' custom property holding the capture's per-frame joint confidence
#: timeline markers where a capture's track breaks (another person, a cut): "new track 1", ...
TRACK_MARKER = "new track"
CONFIDENCE_PROPERTY = "confidence"
CONFIDENCE_DESCRIPTION = ("How much of this bone's rotation the camera saw on this frame (capture joint_confidence; "
                          "0 = unseen: held or neutral pose)")


@dataclass(frozen=True)
class ImportOptions:
    frame_start: int = 1
    root_translation: bool = True
    expressions: bool = True
    set_scene: bool = True          # scene fps and frame range from the capture
    key_unseen: bool = True         # off: no rotation key where a bone's confidence is 0
    lock_feet: bool = True          # a foot-lock rig from the capture's foot_contact (feet_lock)
    ground_plane: bool = True       # a plane object on the capture's ground_plane (feet_lock)
    neutral_face: bool = False      # the clip's resting expression moved into the mesh, keys relative to it


def _new_action(id_block, name: str, id_type: str):
    """A fresh action with one slot, one layer and one keyframe strip, assigned to ``id_block``."""
    action = bpy.data.actions.new(name)
    slot = action.slots.new(id_type=id_type, name=id_block.name)
    strip = action.layers.new("Capture").strips.new(type="KEYFRAME")
    channelbag = strip.channelbag(slot, ensure=True)
    ad = id_block.animation_data or id_block.animation_data_create()
    ad.action = action
    ad.action_slot = slot
    return action, channelbag


def write_curves(channelbag, data_path: str, frames: np.ndarray, values: np.ndarray, group: str | None = None) -> None:
    """One F-curve per column of ``values (T, C)`` at ``frames (T,)``, linear interpolation (``T`` may
    be 0: the F-curves exist without keys)."""
    T, C = values.shape
    co = np.empty((T, 2), np.float32)
    co[:, 0] = frames
    interp = np.full(T, LINEAR, np.int32)
    for c in range(C):
        fc = channelbag.fcurves.new(data_path, index=c, group_name=group or "")
        kp = fc.keyframe_points
        kp.add(T)
        co[:, 1] = values[:, c]
        kp.foreach_set("co", co.ravel())
        kp.foreach_set("interpolation", interp)
        fc.update()


def set_scene_timing(scene, fps: float, frame_start: int, num_frames: int) -> None:
    """Scene frame rate (``fps`` may be fractional, e.g. 29.97 -> 30 / 1.001) and range."""
    if fps > 0:
        whole = max(1, int(round(fps)))
        scene.render.fps = whole
        scene.render.fps_base = whole / float(fps)
    scene.frame_start = frame_start
    scene.frame_end = frame_start + max(num_frames, 1) - 1


def bone_order(arm_obj, joint_names) -> np.ndarray:
    """For each bone of ``arm_obj`` in Blender's order (``data.bones`` / ``pose.bones``,
    depth-first, root first), the index of its joint in ``joint_names``: ``(J,)``."""
    names = [str(n) for n in joint_names]
    try:
        order = np.array([names.index(b.name) for b in arm_obj.data.bones])
    except ValueError as e:
        raise ValueError(f"armature '{arm_obj.name}' has a bone the capture does not name ({e})") from None
    if arm_obj.data.bones[0].parent is not None:
        raise ValueError(f"armature '{arm_obj.name}': the first bone is not the root")
    return order


def bone_confidence(capture, order: np.ndarray, T: int) -> np.ndarray:
    """``(T, bones)`` float32: the capture's ``joint_confidence`` per bone (``order``: the capture joint
    of each bone); 1 when the capture has none (a live recording)."""
    conf = capture.data.get("joint_confidence")
    if conf is None:
        return np.ones((T, len(order)), np.float32)
    return np.asarray(conf, np.float32)[:, order]


def apply_capture(scene, arm_obj, mesh_obj, capture, options: ImportOptions = ImportOptions()) -> dict:
    """Key every frame of ``capture`` on ``arm_obj`` (bones) and ``mesh_obj`` (expressions).

    Returns a summary ``{"frames", "bones", "shape_keys", "foot_lock", "ground", "track_breaks"}`` (the
    foot-lock empties made, the ground object's name or None, the scene frames marked as new tracks:
    :func:`mark_track_breaks`, with ``set_scene``).  Existing animation on
    the avatar is replaced (the old actions stay in ``bpy.data`` for undo/NLA).
    """
    pose_6d = np.asarray(capture["pose_6d"])
    T = pose_6d.shape[0]
    names = [b.name for b in arm_obj.data.bones]
    order = bone_order(arm_obj, capture["joint_names"])               # capture joint per bone
    rest = bone_rest_matrices(arm_obj)
    scale = float(np.asarray(capture["scale"]).reshape(-1)[0]) if np.asarray(capture["scale"]).size else 1.0
    ch = convert.bone_channels(pose_6d[:, order], capture["transl"], rest[:, :3, :3], rest[0, :3, 3],
                               np.asarray(arm_obj["rest_root_model"], np.float64), scale=scale,
                               root_translation=options.root_translation)
    arm_obj.scale = (scale, scale, scale)
    frames = options.frame_start + np.arange(T, dtype=np.float32)
    conf = bone_confidence(capture, order, T)                          # (T, bones)
    keyed = np.ones_like(conf, bool) if options.key_unseen else conf > 0
    _, bag = _new_action(arm_obj, f"{arm_obj.name}_capture", "OBJECT")
    for b, name in enumerate(names):
        k = keyed[:, b]
        quats = ch.quaternions[:, b]
        write_curves(bag, f'pose.bones["{name}"].rotation_quaternion', frames[k], quats[k], group=name)
        pbone = arm_obj.pose.bones[name]
        pbone[CONFIDENCE_PROPERTY] = 1.0
        pbone.id_properties_ui(CONFIDENCE_PROPERTY).update(min=0.0, max=1.0, description=CONFIDENCE_DESCRIPTION)
        write_curves(bag, f'pose.bones["{name}"]["{CONFIDENCE_PROPERTY}"]', frames, conf[:, b:b + 1], group=name)
    write_curves(bag, f'pose.bones["{names[0]}"].location', frames, ch.root_location, group=names[0])
    lock = (feet_lock.add_foot_lock(arm_obj, capture, ch.quaternions, ch.root_location, frames, bag,
                                    write_curves, _new_action) if options.lock_feet else [])
    ground = feet_lock.add_ground_plane(arm_obj, capture) if options.ground_plane else None
    n_keys = 0
    keys = mesh_obj.data.shape_keys if mesh_obj is not None else None
    if options.expressions and keys is not None and "face_expression" in capture.data:
        expr = np.asarray(capture["face_expression"], np.float32)
        expr_names = [str(n) for n in capture["expression_names"]]
        present = [(i, n) for i, n in enumerate(expr_names) if n in keys.key_blocks]
        rest = face_rig.rest_expression(capture, expr_names) if options.neutral_face else np.zeros(len(expr_names))
        face_rig.set_rest_shape(mesh_obj, {n: float(rest[i]) for i, n in present if rest[i] != 0.0})
        expr = expr - rest[None].astype(np.float32)
        if present:
            _, kbag = _new_action(keys, f"{mesh_obj.name}_expressions", "KEY")
            for i, n in present:
                write_curves(kbag, f'key_blocks["{n}"].value', frames, expr[:, i:i + 1], group="Expressions")
            n_keys = len(present)
    if options.expressions:
        face_rig.key_gaze(arm_obj, capture, frames, write_curves, _new_action)
    breaks = []
    if options.set_scene:
        fps = float(np.asarray(capture["fps"]).reshape(-1)[0])
        set_scene_timing(scene, fps, options.frame_start, T)
        breaks = mark_track_breaks(scene, capture, frames)
    return {"frames": T, "bones": len(names), "shape_keys": n_keys, "foot_lock": lock, "ground": ground,
            "track_breaks": breaks}


def mark_track_breaks(scene, capture, frames: np.ndarray) -> list[int]:
    """A timeline marker (:data:`TRACK_MARKER` and a number) on every scene frame whose capture frame starts a
    new track (``track_break``: the detector's person changed, or a cut), replacing the markers of an
    earlier import; -> those scene frames.  The animation jumps there: cut the shot or key over it."""
    for m in [m for m in scene.timeline_markers if m.name.startswith(TRACK_MARKER)]:
        scene.timeline_markers.remove(m)
    tb = capture.data.get("track_break") if hasattr(capture, "data") else None
    if tb is None:
        return []
    out = [int(frames[i]) for i in np.flatnonzero(np.asarray(tb, bool))]
    for k, f in enumerate(out, 1):
        scene.timeline_markers.new(f"{TRACK_MARKER} {k}", frame=f)
    return out
