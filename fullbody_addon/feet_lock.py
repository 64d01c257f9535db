"""Blender: the capture's ground plane and a foot-lock rig (import options *Ground Plane* and
*Lock Feet*, issue 10).

The capture itself already plants the feet (``model_runtime/capture/feet.py``: the file's motion
has them locked, ``foot_contact (T, 2)`` says where, ``ground_plane (4,)`` is the floor in camera
space).  In Blender both are added as separate, removable things, never baked into the keys:

* **Ground Plane**: a plane mesh object ``<avatar>_ground`` on the capture's ``ground_plane``
  (``axes.CAMERA_TO_BLENDER``: the capture camera sits at the world origin), centred under the
  person's mean position.  Delete or hide it; nothing depends on it.
* **Lock Feet**: per foot an empty ``<avatar>_foot_L``/``_R`` on the captured ankle (which the
  capture already holds still through each contact span), and an IK constraint :data:`CONSTRAINT_NAME` (chain of 2: thigh and shin) on the shin bone
  aiming its tail (the ankle) at it.  Its influence is a driver ``contact * lock``: ``contact`` is
  the shin's :data:`CONTACT_PROPERTY` custom property, keyed per frame from ``foot_contact``
  (ramped over :data:`BLEND_S` either side so nothing pops), ``lock`` the armature
  object's :data:`LOCK_PROPERTY` (1 on, 0 off: one switch for both feet, also keyable).

Why a constraint rig and not keys: the feet stay planted, also when the animator edits the
captured motion (an NLA layer on top, a tweak of the hips or the root: the empties keep the
planted positions, the IK bends the legs to them), and switching ``foot_lock`` to 0 (or removing
the constraints and empties) gives back the motion as keyed.  With the captured keys alone the
rig changes nothing (its targets are where the keys put the ankles).  For the motion without the
capture's own foot locking, capture with ``--no-feet``.  A capture made
with ``--no-feet`` has neither labels nor plane: nothing is added.
"""
from __future__ import annotations

from typing import Final

import bpy
import numpy as np
from mathutils import Matrix

from ._runtime import rotations
from .axes import CAMERA_TO_BLENDER

CONSTRAINT_NAME: Final[str] = "Capture Foot Lock"
#: the armature object's switch of both feet's locks (1 on, 0 off)
LOCK_PROPERTY: Final[str] = "foot_lock"
#: the shin bones' per-frame contact weight (0..1) from the capture's foot_contact
CONTACT_PROPERTY: Final[str] = "foot_contact"
#: the lock ramps in/out over this long (s) either side of a contact span, and over at least
#: BLEND_MIN_FRAMES frames: the runtime's own ramp (``model_runtime.capture.feet.BLEND_S`` /
#: ``BLEND_MIN_FRAMES``, which imports scipy, so not from here; tests/test_addon_feet.py keeps them equal)
BLEND_S: Final[float] = 0.1
BLEND_MIN_FRAMES: Final[int] = 2


def blend_frames(fps: float) -> int:
    """Frames of the contact ramp at ``fps``: :data:`BLEND_S` of them, at least :data:`BLEND_MIN_FRAMES`."""
    return max(BLEND_MIN_FRAMES, int(round(BLEND_S * fps))) if fps > 0 else BLEND_MIN_FRAMES
#: (shin bone, whose tail is the ankle) and the chain's bones, [left, right]
LEGS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("left_knee", ("pelvis", "left_hip", "left_knee", "left_ankle")),
    ("right_knee", ("pelvis", "right_hip", "right_knee", "right_ankle")),
)
GROUND_MIN_SIZE: Final[float] = 4.0


def contact_weights(contact: np.ndarray, blend: int = BLEND_MIN_FRAMES) -> np.ndarray:
    """``contact (T,)`` bool -> ``(T,)`` weight: 1 on contact frames, a smoothstep ramp to 0 over
    ``blend`` frames either side, vectorised (distance to the nearest contact frame)."""
    c = np.asarray(contact, bool)
    T = len(c)
    if not c.any():
        return np.zeros(T)
    t = np.arange(T)
    last = np.maximum.accumulate(np.where(c, t, -10 * (T + blend + 1)))
    nxt = np.minimum.accumulate(np.where(c, t, 10 * (T + blend + 1))[::-1])[::-1]
    dist = np.minimum(t - last, nxt - t)
    w = np.clip(1.0 - dist / (blend + 1.0), 0.0, 1.0)
    return w * w * (3.0 - 2.0 * w)


def bone_heads_world(arm_obj, quats: np.ndarray, root_location: np.ndarray, chain: tuple[str, ...]) -> np.ndarray:
    """World positions ``(T, 3)`` of the head of ``chain[-1]`` posed by the keyed channels
    (``quats (T, bones, 4)`` WXYZ in the armature's bone order, ``root_location (T, 3)`` of the
    root bone), numpy forward kinematics along ``chain`` (root first), vectorised over frames:
    ``M_b = M_parent @ rest_parent^-1 @ rest_b @ [R_b | loc_b]`` in armature space."""
    bones = arm_obj.data.bones
    index = {b.name: i for i, b in enumerate(bones)}
    T = len(quats)
    M = None
    prev_rest = None
    for name in chain:
        i = index[name]
        rest = np.array(bones[name].matrix_local, np.float64)
        basis = np.tile(np.eye(4), (T, 1, 1))
        basis[:, :3, :3] = rotations.quat_wxyz_to_matrix(np.asarray(quats[:, i], np.float64))
        if M is None:
            basis[:, :3, 3] = root_location
            M = rest[None] @ basis
        else:
            M = M @ (np.linalg.inv(prev_rest) @ rest)[None] @ basis
        prev_rest = rest
    world = np.array(arm_obj.matrix_basis, np.float64)
    return (M[:, :3, 3] @ world[:3, :3].T) + world[:3, 3]


def _driver_var(driver, name: str, obj, path: str) -> None:
    var = driver.variables.new()
    var.name, var.type = name, "SINGLE_PROP"
    var.targets[0].id_type = "OBJECT"
    var.targets[0].id = obj
    var.targets[0].data_path = path


def add_foot_lock(arm_obj, capture, quats: np.ndarray, root_location: np.ndarray, frames: np.ndarray,
                  arm_bag, write_curves, new_action) -> list[str]:
    """The foot-lock rig (module docstring) for a capture with contact labels; -> the names of the
    empties made (none when the capture has no contact).  ``arm_bag``: the armature action's
    channel bag; ``write_curves``/``new_action``: :mod:`importer`'s bulk F-curve writers."""
    contact = np.asarray(capture.data.get("foot_contact", np.zeros((len(frames), 2), bool)), bool)
    if not contact.any():
        return []
    fps = float(np.asarray(capture.data.get("fps", 0.0)).reshape(-1)[0])
    if LOCK_PROPERTY not in arm_obj:
        arm_obj[LOCK_PROPERTY] = 1.0
        arm_obj.id_properties_ui(LOCK_PROPERTY).update(
            min=0.0, max=1.0, description="Capture foot lock: 1 keeps planted feet still (IK), 0 = the captured motion")
    coll = arm_obj.users_collection[0]
    made = []
    for side, (shin, chain) in zip("LR", LEGS):
        f = "LR".index(side)
        w = contact_weights(contact[:, f], blend_frames(fps))
        target = bone_heads_world(arm_obj, quats, root_location, chain)       # the captured (locked) ankle
        name = f"{arm_obj.name}_foot_{side}"
        empty = bpy.data.objects.get(name)
        if empty is None or empty.type != "EMPTY":
            empty = bpy.data.objects.new(name, None)
            empty.empty_display_type, empty.empty_display_size = "SPHERE", 0.06
            coll.objects.link(empty)
        _, bag = new_action(empty, f"{name}_lock", "OBJECT")
        write_curves(bag, "location", frames, target.astype(np.float32), group="Foot Lock")
        pbone = arm_obj.pose.bones[shin]
        pbone[CONTACT_PROPERTY] = 0.0
        pbone.id_properties_ui(CONTACT_PROPERTY).update(min=0.0, max=1.0,
                                                         description="Capture foot contact (0..1, ramped)")
        write_curves(arm_bag, f'pose.bones["{shin}"]["{CONTACT_PROPERTY}"]', frames,
                     w[:, None].astype(np.float32), group=shin)
        con = pbone.constraints.get(CONSTRAINT_NAME) or pbone.constraints.new("IK")
        con.name, con.target, con.chain_count, con.use_tail = CONSTRAINT_NAME, empty, 2, True
        con.driver_remove("influence")
        drv = con.driver_add("influence").driver
        drv.type, drv.expression = "SCRIPTED", "contact * lock"
        _driver_var(drv, "contact", arm_obj, f'pose.bones["{shin}"]["{CONTACT_PROPERTY}"]')
        _driver_var(drv, "lock", arm_obj, f'["{LOCK_PROPERTY}"]')
        made.append(empty.name)
    return made


def add_ground_plane(arm_obj, capture) -> str | None:
    """The plane object of the capture's ``ground_plane`` (module docstring); None when the
    capture has none (all zeros, or an older file)."""
    plane = np.asarray(capture.data.get("ground_plane", np.zeros(4)), np.float64).reshape(-1)
    if plane.size != 4 or not np.linalg.norm(plane[:3]) > 0:
        return None
    n, d = plane[:3] / np.linalg.norm(plane[:3]), plane[3] / np.linalg.norm(plane[:3])
    valid = np.asarray(capture["valid"], bool)
    transl = np.asarray(capture["transl"], np.float64)[valid]
    centre = transl.mean(0) if len(transl) else np.zeros(3)
    on_plane = centre - (centre @ n + d) * n                      # camera space
    extent = float(np.ptp(transl, axis=0).max()) if len(transl) else 0.0
    size = max(GROUND_MIN_SIZE, 2.0 * extent + 2.0)
    C = np.asarray(CAMERA_TO_BLENDER, np.float64)
    z = C @ n                                                     # the plane's normal (up) in Blender
    x = np.cross([0.0, 1.0, 0.0], z)
    x = x / np.linalg.norm(x) if np.linalg.norm(x) > 1e-6 else np.array([1.0, 0.0, 0.0])
    y = np.cross(z, x)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, y, z], 1)
    M[:3, 3] = C @ on_plane
    name = f"{arm_obj.name}_ground"
    obj = bpy.data.objects.get(name)
    if obj is None or obj.type != "MESH":
        h = 0.5 * size
        mesh = bpy.data.meshes.new(name)
        mesh.from_pydata([(-h, -h, 0), (h, -h, 0), (h, h, 0), (-h, h, 0)], [], [(0, 1, 2, 3)])
        obj = bpy.data.objects.new(name, mesh)
        arm_obj.users_collection[0].objects.link(obj)
    obj.matrix_world = Matrix(M.tolist())
    obj["ground_plane"] = plane.tolist()
    return obj.name
