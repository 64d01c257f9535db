"""Create the avatar in Blender: armature (52 SMPL-H bones) + skinned mesh.

Bulk data goes through ``foreach_set``; the only per-element Python work is
one edit bone per joint (52) and one ``VertexGroup.add`` per non-zero skinning
weight (Blender has no bulk setter for deform weights).
"""
from __future__ import annotations

import bpy
import numpy as np

from . import face_rig
from .avatar_data import AvatarData

AVATAR_TAG = "fullbody_avatar"      # custom property on the armature object
MESH_TAG = "fullbody_mesh"          # custom property on the mesh object
COLOR_ATTRIBUTE = "albedo"


def bone_rest_matrices(arm_obj) -> np.ndarray:
    """``bone.matrix_local`` of every bone ``(J, 4, 4)`` (row-major, armature space),
    in the order of the armature's bones (= joint order for our avatars)."""
    bones = arm_obj.data.bones
    m = np.empty(len(bones) * 16, np.float32)
    bones.foreach_get("matrix_local", m)
    return m.reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)  # foreach_get is column-major


def create_armature(data: AvatarData, name: str, collection) -> bpy.types.Object:
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    collection.objects.link(obj)
    view_layer = bpy.context.view_layer
    prev_active = view_layer.objects.active
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        ebones = [arm.edit_bones.new(n) for n in data.joint_names]
        for j, eb in enumerate(ebones):
            eb.head = data.heads[j]
            eb.tail = data.tails[j]
            eb.roll = 0.0
            eb.use_connect = False
            if data.parents[j] >= 0:
                eb.parent = ebones[data.parents[j]]
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
        view_layer.objects.active = prev_active
    for pb in obj.pose.bones:
        pb.rotation_mode = "QUATERNION"
    obj[AVATAR_TAG] = 1
    obj["betas"] = [float(b) for b in data.betas]
    obj["rest_root_model"] = [float(x) for x in data.rest_joints_model[0]]
    obj["body_source"] = data.source
    arm.display_type = "STICK"
    obj.show_in_front = True
    return obj


def create_mesh(data: AvatarData, name: str, collection, arm_obj) -> bpy.types.Object:
    V, F = len(data.vertices), len(data.faces)
    me = bpy.data.meshes.new(name)
    me.vertices.add(V)
    me.vertices.foreach_set("co", data.vertices.astype(np.float32).ravel())
    me.loops.add(3 * F)
    me.loops.foreach_set("vertex_index", data.faces.astype(np.int32).ravel())
    me.polygons.add(F)
    me.polygons.foreach_set("loop_start", np.arange(0, 3 * F, 3, dtype=np.int32))
    me.update()
    me.validate(clean_customdata=False)
    obj = bpy.data.objects.new(name, me)
    collection.objects.link(obj)
    obj.parent = arm_obj
    obj[MESH_TAG] = 1
    _set_vertex_groups(obj, data)
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm_obj
    mod.use_vertex_groups = True
    _set_shape_keys(obj, data)
    _set_colors(obj, data)
    me.polygons.foreach_set("use_smooth", np.ones(F, bool))
    return obj


def _set_vertex_groups(obj, data: AvatarData) -> None:
    groups = [obj.vertex_groups.new(name=n) for n in data.joint_names]
    v_idx, j_idx = np.nonzero(data.weights > 0.0)
    w = data.weights[v_idx, j_idx]
    # One call per non-zero weight: Blender has no bulk setter for deform weights.
    for v, j, wt in zip(v_idx.tolist(), j_idx.tolist(), w.tolist()):
        groups[j].add((v,), wt, "REPLACE")


def _set_shape_keys(obj, data: AvatarData) -> None:
    if not data.shape_key_names:
        return
    basis = obj.shape_key_add(name="Basis", from_mix=False)
    basis.interpolation = "KEY_LINEAR"
    base = data.vertices.astype(np.float32)
    for name, delta in zip(data.shape_key_names, data.shape_key_deltas):
        kb = obj.shape_key_add(name=name, from_mix=False)
        kb.data.foreach_set("co", (base + delta).ravel())
        kb.slider_min, kb.slider_max = -10.0, 10.0   # signed 3DMM coefficients survive
    obj.data.shape_keys.use_relative = True


def _set_colors(obj, data: AvatarData) -> None:
    me = obj.data
    colors = data.colors
    if colors is None:
        colors = np.full((len(data.vertices), 3), 0.8, np.float32)  # neutral skin when no albedo was captured
    attr = me.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    rgba = np.concatenate([np.clip(colors, 0.0, 1.0), np.ones((len(colors), 1), np.float32)], axis=1)
    attr.data.foreach_set("color", rgba.astype(np.float32).ravel())
    me.color_attributes.active_color = attr
    me.color_attributes.render_color_index = me.color_attributes.active_color_index
    me.materials.append(_albedo_material(obj.name + "_albedo"))


def _albedo_material(name: str):
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # Blender < 5.0 creates materials without nodes
        mat.use_nodes = True
    nt = mat.node_tree
    bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
    attr = nt.nodes.new("ShaderNodeVertexColor")
    attr.layer_name = COLOR_ATTRIBUTE
    attr.location = (bsdf.location.x - 300, bsdf.location.y)
    nt.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.6
    return mat


def create_avatar(data: AvatarData, name: str = "FullBody", collection=None):
    """Armature + parented skinned mesh; returns ``(armature_object, mesh_object)``."""
    collection = collection or bpy.context.scene.collection
    arm_obj = create_armature(data, name, collection)
    mesh_obj = create_mesh(data, name + "_mesh", collection, arm_obj)
    arm_obj["mesh_name"] = mesh_obj.name
    face_rig.create_eyes(arm_obj, data.eyes, collection, iris=data.iris_colour)
    return arm_obj, mesh_obj


def find_avatar(context):
    """The active avatar armature, else the first one in the scene, else None."""
    ob = context.view_layer.objects.active if context.view_layer else None
    if ob is not None and ob.get(AVATAR_TAG) is None and ob.parent is not None and ob.parent.get(AVATAR_TAG):
        ob = ob.parent
    if ob is not None and ob.get(AVATAR_TAG):
        return ob
    return next((o for o in context.scene.objects if o.get(AVATAR_TAG)), None)


def avatar_mesh(arm_obj):
    """The mesh object skinned to ``arm_obj`` (None if the user deleted it)."""
    return next((c for c in arm_obj.children if c.get(MESH_TAG)), None)
