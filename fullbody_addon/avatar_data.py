"""Everything the avatar needs, as numpy arrays in Blender axes (no bpy).

:func:`avatar_data_from_capture` gathers, for one capture's shape ``betas``:
the rest joints and bone tails, the mesh (body, or the merged body + bridged face
when ``model_runtime.full_model`` is available), skinning weights, expression
shape keys and the albedo colours.  :mod:`avatar` turns it into Blender data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import axes
from ._runtime import body_model as _body_model
from ._runtime import errors, face_model, lbs, optional_module, skeleton

#: joints with several children: which child the bone points at
PRIMARY_CHILD: dict[str, str] = {
    "pelvis": "spine1",
    "spine3": "neck",
    "left_wrist": "left_middle1",
    "right_wrist": "right_middle1",
}
MIN_BONE_LENGTH = 0.01  # metres; Blender deletes zero-length bones


@dataclass
class AvatarData:
    """Rest geometry in Blender axes (metres).

    joint_names ``(J,)``; parents ``(J,)``; heads ``(J, 3)``; tails ``(J, 3)``;
    rest_joints_model ``(J, 3)`` (model axes, needed by :mod:`convert`);
    vertices ``(V, 3)``; faces ``(F, 3)`` int; weights ``(V, J)``;
    shape_key_names ``(E,)``; shape_key_deltas ``(E, V, 3)``;
    colors ``(V, 3)`` linear RGB 0..1 or None.
    """

    joint_names: tuple[str, ...]
    parents: np.ndarray
    heads: np.ndarray
    tails: np.ndarray
    rest_joints_model: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    shape_key_names: tuple[str, ...] = ()
    shape_key_deltas: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 3), np.float32))
    colors: np.ndarray | None = None
    warnings: list = field(default_factory=list)   # shown to the user by the operators
    betas: np.ndarray = field(default_factory=lambda: np.zeros(skeleton.NUM_BETAS, np.float32))
    source: str = ""


def bone_tails(heads: np.ndarray, parents: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Tails ``(J, 3)``: at the primary child's head; leaves continue their parent's
    direction for half its length (vectorised over joints, one pass per rule)."""
    J = len(names)
    parents = np.asarray(parents)
    child = np.full(J, -1)
    js = np.arange(1, J)
    child[parents[js][::-1]] = js[::-1]          # first child wins
    for p, c in PRIMARY_CHILD.items():
        if p in names and c in names:
            child[names.index(p)] = names.index(c)
    tails = np.empty_like(heads)
    has = child >= 0
    tails[has] = heads[child[has]]
    leaves = np.nonzero(~has)[0]
    par = parents[leaves]
    direction = heads[leaves] - heads[par]
    tails[leaves] = heads[leaves] + 0.5 * direction
    vec = tails - heads
    length = np.linalg.norm(vec, axis=-1, keepdims=True)
    short = length[:, 0] < MIN_BONE_LENGTH
    if short.any():  # keep the direction when it exists, else point up (+Z)
        d = np.where(length > 1e-9, vec / np.maximum(length, 1e-12), np.array([0.0, 0.0, 1.0]))
        tails[short] = heads[short] + MIN_BONE_LENGTH * d[short]
    return tails


def avatar_data_from_body(body, betas: np.ndarray | None = None) -> AvatarData:
    """Body-only avatar for a :class:`~model_runtime.body_model.BodyModel` and ``betas (<=16,)``."""
    b = np.zeros(skeleton.NUM_BETAS, np.float32)
    if betas is not None:
        bb = np.asarray(betas, np.float32).reshape(-1)[: skeleton.NUM_BETAS]
        b[: bb.shape[0]] = bb
    v_model = lbs.shape_blend(body.v_template.astype(np.float64), body.shapedirs[..., : skeleton.NUM_BETAS].astype(np.float64),
                              b[None].astype(np.float64))[0]
    j_model = lbs.regress_joints(body.J_regressor.astype(np.float64), v_model[None])[0]
    heads = axes.model_points_to_blender(j_model)
    names = tuple(body.joint_names)
    return AvatarData(
        joint_names=names,
        parents=np.asarray(body.parents),
        heads=heads,
        tails=bone_tails(heads, body.parents, names),
        rest_joints_model=j_model,
        vertices=axes.model_points_to_blender(v_model),
        faces=np.asarray(body.faces, np.int32),
        weights=np.asarray(body.weights, np.float32),
        betas=b,
        source=body.source,
    )


def avatar_data_from_capture(capture, body=None, face=None) -> AvatarData:
    """Avatar for a loaded capture (:class:`~model_runtime.capture_file.Capture`).

    With a face model (``face``: a :class:`FaceModel`, ``"builtin"``/None for the
    capture's, or a BFM path) and ``model_runtime.full_model`` importable, the
    mesh is the merged body + bridged face with the capture's identity applied
    to the basis, one shape key per expression and the captured albedo;
    otherwise (or with ``face=False``) the body alone.  ``body`` overrides the
    capture's body model.
    """
    betas = np.asarray(capture["betas"], np.float32).reshape(-1)
    if body is None:
        body = _body_model.load_body_model(_model_spec(capture, "body_model"))
    full = optional_module("full_model") if face is not False else None
    if full is None:
        return avatar_data_from_body(body, betas)
    if face is None or isinstance(face, str):
        spec = face if isinstance(face, str) else _model_spec(capture, "face_model")
        try:
            face = face_model.load_face_model(spec)
        except errors.ModelFileError:
            if spec is not None:
                raise                      # a named BFM file that cannot be read is an error
            return avatar_data_from_body(body, betas)  # no built-in face in this build
    identity = _coefficients(capture, "face_identity", face.sizes["identity"])
    albedo = _coefficients(capture, "face_albedo", face.sizes["albedo"])
    try:
        merged = full.build_full_model(body, face)
    except errors.ModelFileError as e:
        if face.kind != "builtin":
            raise
        data = avatar_data_from_body(body, betas)   # e.g. a body without a face region: keep the body
        data.warnings.append(f"no face on this avatar: {e}")
        return data
    return avatar_data_from_full_model(merged, betas, identity, albedo)


def _coefficients(capture, key: str, n: int) -> np.ndarray:
    """``capture[key]`` padded/cut to ``n`` coefficients (zeros when the capture has none)."""
    out = np.zeros(n, np.float32)
    if key in capture.data:
        c = np.asarray(capture[key], np.float32).reshape(-1)[:n]
        out[: len(c)] = c
    return out


def avatar_data_from_full_model(full, betas: np.ndarray, identity: np.ndarray, albedo: np.ndarray) -> AvatarData:
    """Merged body + face (a ``model_runtime.full_model.FullBodyModel``) for one person.

    The basis is the rest mesh for ``betas (16,)`` and face ``identity (Ki,)``;
    shape key k is the rest mesh with expression e_k minus the basis (the
    forward pass is linear in the expression, so keys add exactly as Eq. 3).
    """
    body, face = full.body, full.face
    base = avatar_data_from_body(body, betas)
    Ke = face.sizes["expression"]
    B = Ke + 1
    rot = np.broadcast_to(np.eye(3), (B, skeleton.NUM_JOINTS, 3, 3)).copy()
    expr = np.concatenate([np.zeros((1, Ke)), np.eye(Ke)])                      # (Ke+1, Ke)
    verts, _ = full.forward(np.broadcast_to(base.betas.astype(np.float64), (B, skeleton.NUM_BETAS)).copy(), rot,
                            np.broadcast_to(identity.astype(np.float64), (B, len(identity))).copy(), expr)
    verts = axes.model_points_to_blender(verts)                                  # (Ke+1, Vm, 3)
    colors = full.vertex_colors().astype(np.float32)
    colors[full.face_vertex_slice] = np.clip(
        face_model.face_albedo(face.mean_albedo, face.albedo_basis, albedo[None].astype(np.float32))[0], 0.0, 1.0)
    base.vertices = verts[0]
    base.faces = np.asarray(full.merged_faces, np.int32)
    base.weights = full.skin_weights().astype(np.float32)
    base.shape_key_names = tuple(face.exp_names)
    base.shape_key_deltas = (verts[1:] - verts[:1]).astype(np.float32)
    base.colors = colors
    base.source = f"{body.source} + {face.source}"
    return base


def _model_spec(capture, key: str) -> str | None:
    spec = str(np.asarray(capture[key]).reshape(()).item()) if key in capture.data else "builtin"
    return None if spec in ("", "builtin") else spec
