"""Everything the avatar needs, as numpy arrays in Blender axes (no bpy).

:func:`avatar_data_from_capture` gathers, for one capture's shape ``betas``:
the rest joints and bone tails, the mesh (body, or the merged body + bridged
face), skinning weights, expression shape keys and the albedo colours.
:mod:`avatar` turns it into Blender data.

The merged model is built here with numpy alone (``model_runtime.models.full_model``
needs no scipy).  A face model this Python cannot read (a Basel ``.mat`` needs
scipy, which Blender's Python lacks), or a build without ``full_model``, is
converted by the runtime's interpreter into an avatar file
(:mod:`runtime_convert`, :mod:`model_runtime.models.avatar_file`) that is read here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import axes
from ._runtime import errors, face_model, lbs, load_body_model, load_face_model, optional_module, skeleton

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
    eyes: np.ndarray | None = None                 # (2, 4) eyeball centre (Blender axes) + radius, [right, left]
    iris_colour: np.ndarray | None = None          # (3,) linear RGB of the person's iris, None: the default
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
    """Body-only avatar for a :class:`~model_runtime.models.body_model.BodyModel` and ``betas (<=16,)``."""
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


def avatar_data_from_capture(capture, body=None, face=None, runtime_python: str | None = None) -> AvatarData:
    """Avatar for a loaded capture (:class:`~model_runtime.core.capture_file.Capture`).

    With a face model (``face``: a :class:`FaceModel`, ``"builtin"``/None for the
    capture's, or a BFM path) the mesh is the merged body + bridged face with the
    capture's identity applied to the basis, one shape key per expression and
    the captured albedo; with ``face=False`` the body alone.  ``body`` overrides
    the capture's body model.  Face files this Python cannot read are converted
    by the runtime at ``runtime_python`` (:func:`needs_runtime`); without one
    that raises :class:`~fullbody_addon.runtime_client.RuntimeNotSetUp`.
    """
    betas = np.asarray(capture["betas"], np.float32).reshape(-1)
    # the model names stored in a capture are only compared, never opened: a file is opened only
    # when the user picked it (``body``/``face`` given by the panel)
    notes = []
    if body is None:
        body = load_body_model(None)
    notes += _model_mismatch(capture, "body_model", "builtin" if body.kind == "builtin" else body.source)
    if face is False:
        data = avatar_data_from_body(body, betas)
        data.warnings.extend(notes)
        return data
    spec = None
    if face is None or isinstance(face, str):
        spec = None if face in (None, "", "builtin") else str(face)
        notes += _model_mismatch(capture, "face_model", spec or "builtin")
    data = _avatar_data_with_face(capture, body, face, spec, betas, runtime_python)
    data.warnings.extend(notes)
    data.iris_colour = captured_iris_colour(capture)
    return data


def captured_iris_colour(capture) -> np.ndarray | None:
    """The capture's ``iris_colour (3,)`` (linear RGB in [0, 1], checked by the loader), or None when it
    has none (zeros: not seen, a file older than the field, or a capture built in memory without it)."""
    c = np.asarray(capture.data.get("iris_colour", np.zeros(3)), np.float32)
    return c if c.any() else None


def _model_mismatch(capture, key: str, used: str) -> list[str]:
    """A warning when the capture names another model file than the one used (never opened)."""
    stored = _model_spec(capture, key) or "builtin"
    if stored == used or Path(stored).name == Path(used).name:
        return []
    what = key.replace("_", " ")
    return [f"this capture was made with the {what} '{stored}'; the avatar uses '{used}' "
            f"(pick that file in the panel to use it)"]


def _avatar_data_with_face(capture, body, face, spec, betas, runtime_python) -> AvatarData:
    if not isinstance(face, face_model.FaceModel):
        if needs_runtime(spec):
            return avatar_data_via_runtime(capture, body, spec, runtime_python)
        try:
            face = load_face_model(spec)
        except errors.ModelFileError as e:
            if spec is not None:
                raise                      # a named BFM file that cannot be read is an error
            data = avatar_data_from_body(body, betas)   # no built-in face in this build
            data.warnings.append(f"no face on this avatar: {e}")
            return data
    full = optional_module("full_model")
    if full is None:
        data = avatar_data_from_body(body, betas)
        data.warnings.append("no face on this avatar: this build has no model_runtime.models.full_model")
        return data
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
    detail = np.asarray(capture.data.get("face_albedo_detail", np.zeros((0, 3))), np.float32)
    if detail.shape != (face.num_vertices, 3):
        detail = None                    # none captured (0, 3), or captured with another face model
    return avatar_data_from_full_model(merged, betas, identity, albedo, detail)


def needs_runtime(face_spec: str | None) -> bool:
    """Whether this Python must ask the runtime to build the avatar with face ``face_spec``
    (None: built-in): true when ``model_runtime.models.full_model`` cannot be imported, or
    for a ``.mat`` face when scipy cannot (Blender's own Python)."""
    if optional_module("full_model") is None:
        return True
    if face_spec is not None and Path(face_spec).suffix.lower() == ".mat":
        try:
            import scipy.io  # noqa: F401
        except ImportError:
            return True
    return False


def avatar_data_via_runtime(capture, body, face_spec: str | None, runtime_python: str | None) -> AvatarData:
    """The merged avatar written by the runtime (:func:`runtime_convert.avatar_file_via_runtime`) and read here."""
    from .runtime_convert import avatar_file_via_runtime

    person = {"betas": np.asarray(capture["betas"], np.float32).reshape(-1)[: skeleton.NUM_BETAS]}
    for key, cap_key in (("identity", "face_identity"), ("albedo", "face_albedo"), ("albedo_detail", "face_albedo_detail")):
        if cap_key in capture.data and np.asarray(capture[cap_key]).size:
            person[key] = np.asarray(capture[cap_key], np.float32).reshape(-1)
    body_spec = "builtin" if body.kind == "builtin" else body.source
    path = avatar_file_via_runtime(runtime_python, body_spec, face_spec or "builtin", person)
    return avatar_data_from_arrays(_avatar_file().read_avatar_file(path))


def _coefficients(capture, key: str, n: int) -> np.ndarray:
    """``capture[key]`` padded/cut to ``n`` coefficients (zeros when the capture has none)."""
    out = np.zeros(n, np.float32)
    if key in capture.data:
        c = np.asarray(capture[key], np.float32).reshape(-1)[:n]
        out[: len(c)] = c
    return out


def avatar_data_from_full_model(full, betas: np.ndarray, identity: np.ndarray, albedo: np.ndarray,
                                albedo_detail: np.ndarray | None = None) -> AvatarData:
    """Merged body + face (a ``model_runtime.models.full_model.FullBodyModel``) for one person
    (``albedo_detail (N, 3)``: the captured colour detail of the face, or None):
    :func:`model_runtime.models.avatar_file.avatar_arrays` in Blender axes."""
    return avatar_data_from_arrays(_avatar_file().avatar_arrays(full, betas, identity, albedo, albedo_detail))


def _avatar_file():
    """``model_runtime.models.avatar_file`` of this build (numpy only, always shipped)."""
    mod = optional_module("avatar_file")
    if mod is None:
        raise ImportError("this build of the add-on lacks model_runtime.models.avatar_file")
    return mod


def avatar_data_from_arrays(a: dict) -> AvatarData:
    """:class:`AvatarData` from avatar-file arrays ``a`` (model axes; see :mod:`model_runtime.models.avatar_file`).

    The basis is the rest mesh of the person; shape key k is the mesh with
    expression e_k minus the basis (axes conversion is linear, so deltas convert
    like points).
    """
    names = tuple(str(n) for n in a["joint_names"])
    parents = np.asarray(a["parents"], np.int64)
    joints = np.asarray(a["rest_joints"], np.float64)
    heads = axes.model_points_to_blender(joints)
    betas = np.zeros(skeleton.NUM_BETAS, np.float32)
    b = np.asarray(a["betas"], np.float32).reshape(-1)[: skeleton.NUM_BETAS]
    betas[: len(b)] = b
    return AvatarData(
        joint_names=names,
        parents=parents,
        heads=heads,
        tails=bone_tails(heads, parents, names),
        rest_joints_model=joints,
        vertices=axes.model_points_to_blender(np.asarray(a["vertices"], np.float64)),
        faces=np.asarray(a["faces"], np.int32),
        weights=np.asarray(a["skin_weights"], np.float32),
        shape_key_names=tuple(str(n) for n in a["expression_names"]),
        shape_key_deltas=axes.model_points_to_blender(np.asarray(a["expression_deltas"])).astype(np.float32),
        colors=np.asarray(a["colors"], np.float32),
        betas=betas,
        source=str(a["source"]),
        eyes=_eyes_to_blender(a.get("eyes")),
    )


def _eyes_to_blender(eyes) -> np.ndarray | None:
    """Avatar-file ``eyes (2, 4)`` (model axes) -> Blender axes, or None when absent/malformed."""
    if eyes is None or np.shape(eyes) != (2, 4) or not np.isfinite(eyes).all():
        return None
    e = np.asarray(eyes, np.float64).copy()
    e[:, :3] = axes.model_points_to_blender(e[:, :3])
    return e


def _model_spec(capture, key: str) -> str | None:
    spec = str(np.asarray(capture[key]).reshape(()).item()) if key in capture.data else "builtin"
    return None if spec in ("", "builtin") else spec
