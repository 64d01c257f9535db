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
from ._runtime import lbs, optional_module, skeleton

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

    Uses the merged body + bridged face of ``model_runtime.full_model`` when this
    build has it (identity applied to the basis, expression shape keys, albedo);
    otherwise the body alone.  ``body``/``face`` override the models named in
    the capture (``"builtin"`` or a file path).
    """
    betas = np.asarray(capture["betas"], np.float32).reshape(-1)
    if body is None:
        body = _body_model.load_body_model(_model_spec(capture, "body_model"))
    full = optional_module("full_model")
    if full is not None and hasattr(full, "avatar_arrays"):
        return _from_full_model(full, capture, body, face, betas)
    return avatar_data_from_body(body, betas)


def _model_spec(capture, key: str) -> str | None:
    spec = str(np.asarray(capture[key]).reshape(()).item()) if key in capture.data else "builtin"
    return None if spec in ("", "builtin") else spec


def _from_full_model(full, capture, body, face, betas) -> AvatarData:
    """Merged mesh via ``full_model.avatar_arrays`` (contract: model axes, numpy)."""
    arr = full.avatar_arrays(body=body, face=face or _model_spec(capture, "face_model"), betas=betas,
                             identity=np.asarray(capture["face_identity"], np.float32),
                             albedo=np.asarray(capture["face_albedo"], np.float32))
    base = avatar_data_from_body(body, betas)
    base.vertices = axes.model_points_to_blender(arr["vertices"])
    base.faces = np.asarray(arr["faces"], np.int32)
    base.weights = np.asarray(arr["weights"], np.float32)
    base.shape_key_names = tuple(str(n) for n in arr["expression_names"])
    base.shape_key_deltas = axes.model_points_to_blender(arr["expression_deltas"]).astype(np.float32)
    base.colors = None if arr.get("colors") is None else np.asarray(arr["colors"], np.float32)
    return base
