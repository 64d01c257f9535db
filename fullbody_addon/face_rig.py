"""The avatar's eyes: two procedural eyeballs parented to the ``head`` bone, turned by the gaze.

Geometry is generated here (a UV sphere with sclera, iris and pupil as vertex colours: CC0 by
construction); the centres and radii come from the avatar file's ``eyes`` (the face model's eye
landmarks, :func:`model_runtime.models.full_model.eye_spheres`), the iris colour from the
capture's ``iris_colour`` when it has one (sampled from the person's eyes,
:mod:`model_runtime.face.eye_colour`), else :data:`IRIS_RGB`.  Each eye is an object whose
origin is the eyeball's centre, parented to the armature's ``head`` bone, so it follows the head;
the capture's ARKit ``eyeLook*`` keys (gaze from MediaPipe's iris landmarks,
:mod:`model_runtime.face.gaze`) are turned into per-frame rotations (``rotation_euler``: Z = yaw to
the person's left, X = pitch down, both relative to the head) keyed with ``foreach_set``.
"""
from __future__ import annotations

import bpy
import numpy as np

EYE_OBJECTS = ("Eye_R", "Eye_L")          # person's right, left (order of AvatarData.eyes)
EYE_TAG = "fullbody_eye"
HEAD_BONE = "head"
#: angular radii (degrees from the eye's front axis) of pupil and iris; colours linear RGB
PUPIL_DEG, IRIS_DEG = 10.0, 27.0
PUPIL_RGB, IRIS_RGB, SCLERA_RGB = (0.01, 0.01, 0.01), (0.12, 0.07, 0.03), (0.80, 0.78, 0.74)
COLOR_ATTRIBUTE = "albedo"


def uv_sphere(radius: float, segments: int = 32, rings: int = 16, iris=IRIS_RGB
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A UV sphere around the origin whose pole points at Blender -Y (the avatar's front) ->
    ``(verts (V, 3), quads (F, 4) vertex ids, colours (V, 3) linear RGB)`` (pupil/iris/sclera by the
    angle from -Y, the iris ``iris (3,)``; triangles at the poles are quads with a repeated vertex)."""
    th = np.linspace(0.0, np.pi, rings + 1)                          # angle from the front pole
    ph = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    T, P = np.meshgrid(th, ph, indexing="ij")                        # (rings+1, segments)
    v = np.stack([np.sin(T) * np.cos(P), -np.cos(T), np.sin(T) * np.sin(P)], -1).reshape(-1, 3) * radius
    ang = np.degrees(T).reshape(-1)
    col = np.where((ang <= PUPIL_DEG)[:, None], PUPIL_RGB,
                   np.where((ang <= IRIS_DEG)[:, None], np.asarray(iris, np.float64), SCLERA_RGB)).astype(np.float32)
    r, s = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    a = r * segments + s
    b = r * segments + (s + 1) % segments
    quads = np.stack([a, (a + segments), (b + segments), b], -1).reshape(-1, 4)
    return v.astype(np.float32), quads.astype(np.int32), col


def _eye_mesh(name: str, radius: float, iris=IRIS_RGB):
    v, quads, col = uv_sphere(radius, iris=iris)
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(v))
    me.vertices.foreach_set("co", v.ravel())
    me.loops.add(quads.size)
    me.loops.foreach_set("vertex_index", quads.ravel())
    me.polygons.add(len(quads))
    me.polygons.foreach_set("loop_start", np.arange(0, quads.size, 4, dtype=np.int32))
    me.update()
    me.validate(clean_customdata=False)
    attr = me.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", np.concatenate([col, np.ones((len(col), 1), np.float32)], 1).ravel())
    me.color_attributes.active_color = attr
    me.color_attributes.render_color_index = me.color_attributes.active_color_index
    me.polygons.foreach_set("use_smooth", np.ones(len(quads), bool))
    return me


def _eye_material(name: str):
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    nt = mat.node_tree
    bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
    attr = nt.nodes.new("ShaderNodeVertexColor")
    attr.layer_name = COLOR_ATTRIBUTE
    nt.links.new(attr.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = 0.15                  # wet, with a highlight
    return mat


def create_eyes(arm_obj, eyes: np.ndarray | None, collection=None, iris=None) -> list:
    """Two eyeball objects for ``eyes (2, 4)`` (centre in the armature's rest space, Blender axes, +
    radius; [person's right, left]), parented to ``arm_obj``'s ``head`` bone with their rest
    placement kept, irises ``iris (3,)`` linear RGB (None: :data:`IRIS_RGB`); -> the objects ([]
    when ``eyes`` is None or there is no head bone)."""
    if eyes is None or HEAD_BONE not in arm_obj.data.bones:
        return []
    from mathutils import Matrix

    collection = collection or arm_obj.users_collection[0]
    bone = arm_obj.data.bones[HEAD_BONE]
    # bone parenting: child world = armature world @ bone (rest, armature space) @ to-tail @ parent_inverse @ basis
    parent_rest = arm_obj.matrix_world @ bone.matrix_local @ Matrix.Translation((0.0, bone.length, 0.0))
    mat = _eye_material(f"{arm_obj.name}_eyes")
    out = []
    for name, e in zip(EYE_OBJECTS, np.asarray(eyes, np.float64)):
        obj = bpy.data.objects.new(f"{arm_obj.name}_{name}", _eye_mesh(f"{arm_obj.name}_{name}", float(e[3]),
                                                                        IRIS_RGB if iris is None else iris))
        obj.data.materials.append(mat)
        collection.objects.link(obj)
        obj.parent = arm_obj
        obj.parent_type = "BONE"
        obj.parent_bone = HEAD_BONE
        obj.matrix_parent_inverse = parent_rest.inverted() @ arm_obj.matrix_world
        obj.location = tuple(float(x) for x in e[:3])
        obj.rotation_mode = "XYZ"
        obj[EYE_TAG] = name
        out.append(obj)
    return out


def find_eyes(arm_obj) -> list:
    """The eye objects of ``arm_obj`` in :data:`EYE_OBJECTS` order (missing ones left out)."""
    kids = {c.get(EYE_TAG): c for c in arm_obj.children if c.get(EYE_TAG)}
    return [kids[n] for n in EYE_OBJECTS if n in kids]


def _face_module(name: str):
    """``model_runtime.face.<name>`` of this build (``gaze``, ``neutral``: numpy only, shipped with the
    extension)."""
    import importlib

    from . import _runtime

    return importlib.import_module(_runtime.body_model.__package__.rsplit(".", 1)[0] + ".face." + name)


def gaze_angles(expression: np.ndarray, names) -> np.ndarray:
    """``expression (T, E)`` of ``names`` -> ``(T, 2, 2)`` radians [eye right, left][yaw to the
    person's left, pitch down]: the runtime's ``face.gaze.keys_to_angles`` (one definition)."""
    return _face_module("gaze").keys_to_angles(expression, [str(n) for n in names])


def key_gaze(arm_obj, capture, frames: np.ndarray, write_curves, new_action) -> int:
    """Key the eyes' rotations from the capture's ``eyeLook*`` keys on ``frames (T,)``; -> eyes keyed.
    ``write_curves``/``new_action``: the importer's F-curve writers (bulk ``foreach_set``)."""
    eyes = find_eyes(arm_obj)
    if not eyes or "face_expression" not in capture.data:
        return 0
    ang = gaze_angles(capture["face_expression"], [str(n) for n in capture["expression_names"]])
    for k, obj in enumerate(eyes):
        eul = np.zeros((len(frames), 3), np.float32)
        eul[:, 0] = ang[:, k, 1]          # pitch down: the front (-Y) tilts towards -Z about +X
        eul[:, 2] = ang[:, k, 0]          # yaw to the person's left (+X) about +Z
        _, bag = new_action(obj, f"{obj.name}_gaze", "OBJECT")
        write_curves(bag, "rotation_euler", frames, eul, group="Gaze")
    return len(eyes)


# --------------------------------------------------------------------------- neutral face
#: the mesh's custom property holding the resting expression moved into its shape ({key name: value})
REST_PROPERTY = "fullbody_rest_expression"


def rest_expression(capture, names) -> np.ndarray:
    """The capture's resting level of each of its keys ``(E,)`` (``face.neutral.rest_expression``)."""
    valid = capture["valid"] if "valid" in capture.data else None
    return _face_module("neutral").rest_expression(capture["face_expression"], [str(n) for n in names], valid)


def set_rest_shape(mesh_obj, rest: dict[str, float]) -> float:
    """Move the resting expression ``rest`` ({shape key: level}, {} = none) into ``mesh_obj``'s shape:
    the basis and every shape key get ``sum_k level_k (key_k - basis)`` added, less what an earlier
    call added (kept in :data:`REST_PROPERTY`), so each key's own offset stays and repeated imports
    do not add up.  Keyed at ``value - level``, the posed mesh is the one keyed at ``value`` without it.
    Returns the largest vertex move (model units)."""
    keys = mesh_obj.data.shape_keys
    if keys is None:
        return 0.0
    old = {str(k): float(v) for k, v in dict(mesh_obj.get(REST_PROPERTY, {})).items()}
    blocks = keys.key_blocks
    change = {n: rest.get(n, 0.0) - old.get(n, 0.0) for n in set(rest) | set(old) if n in blocks}
    change = {n: v for n, v in change.items() if v != 0.0}
    if change:
        V = len(mesh_obj.data.vertices)
        basis = np.empty(3 * V, np.float32)
        keys.reference_key.data.foreach_get("co", basis)
        co = np.empty(3 * V, np.float32)
        offset = np.zeros(3 * V, np.float64)
        for n, v in change.items():
            blocks[n].data.foreach_get("co", co)
            offset += v * (co.astype(np.float64) - basis)
        for kb in blocks:
            kb.data.foreach_get("co", co)
            kb.data.foreach_set("co", (co + offset).astype(np.float32))
        mesh_obj.data.vertices.foreach_get("co", co)
        mesh_obj.data.vertices.foreach_set("co", (co + offset).astype(np.float32))
        mesh_obj.data.update()
    kept = {n: float(v) for n, v in rest.items() if n in blocks and v != 0.0}
    if kept:
        mesh_obj[REST_PROPERTY] = kept
    elif REST_PROPERTY in mesh_obj:
        del mesh_obj[REST_PROPERTY]
    return float(np.abs(offset).max()) if change else 0.0
