"""The avatar file: one person's merged body + face mesh as a plain ``.npz`` (numpy only).

:func:`avatar_arrays` computes, for a :class:`~model_runtime.models.full_model.FullBodyModel`
and one person's shape ``betas``, face ``identity`` and ``albedo``, everything
an animated avatar needs.  The Blender add-on uses it directly when it can
build the merged model itself; when it cannot (a Basel face ``.mat`` needs
scipy, which Blender's Python lacks) the runtime writes the same arrays with
``python -m model_runtime model export --format npz`` (:func:`write_avatar_file`)
and the add-on reads them back with :func:`read_avatar_file`.

Model space: metres, Y up, the character faces +Z.  Fields (``Vm`` merged
vertices, ``Fm`` triangles, ``J = 52`` joints, ``E`` expressions)::

    format             "fullbody_avatar"
    version            AVATAR_FILE_VERSION
    joint_names        (J,) str          SMPL-H order
    parents            (J,) int64        -1 for the root
    rest_joints        (J, 3) float64    rest joints of the shape ``betas``
    vertices           (Vm, 3) float32   rest mesh: betas, identity, neutral expression
    faces              (Fm, 3) int32
    skin_weights       (Vm, J) float32   rows sum to 1 (face: 1.0 on ``head``)
    expression_names   (E,) str
    expression_deltas  (E, Vm, 3) float32  mesh with expression e_k = 1, minus ``vertices``
    colors             (Vm, 3) float32   linear RGB 0..1 (face: albedo, blended into the body's tone at
                                         the seam; body: the face albedo's median)
    betas              (16,) float32, identity (Ki,) float32, albedo (Ka,) float32
    num_body_vertices  ()                vertices [0, n) are body, [n, Vm) the 3DMM face
    eyes               (2, 4) float32    optional: eyeball centre xyz + radius, [person's right, left]
                                         (:func:`full_model.eye_spheres`; absent without eye landmarks)
    source             ()  str           "<body source> + <face source>"
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from ..core import lbs as _lbs
from ..core.errors import ModelFileError
from ..core.safe_npz import load_npz
from ..core.skeleton import JOINT_NAMES, NUM_BETAS, NUM_JOINTS

if TYPE_CHECKING:
    from .full_model import FullBodyModel

__all__ = ["AVATAR_FILE_VERSION", "AVATAR_FORMAT", "avatar_arrays", "write_avatar_file", "read_avatar_file"]

AVATAR_FILE_VERSION: Final[int] = 1
AVATAR_FORMAT: Final[str] = "fullbody_avatar"
_STRINGS: Final[tuple[str, ...]] = ("format", "joint_names", "expression_names", "source")


def _padded(values, n: int) -> np.ndarray:
    """``values`` as ``(n,)`` float32, cut or zero-padded (None: zeros)."""
    out = np.zeros(n, np.float32)
    if values is not None:
        v = np.asarray(values, np.float32).reshape(-1)[:n]
        out[: len(v)] = v
    return out


def avatar_arrays(full: "FullBodyModel", betas=None, identity=None, albedo=None,
                  albedo_detail=None) -> dict[str, np.ndarray]:
    """The avatar of one person (see the module doc for the fields).

    betas ``(<=16,)``, identity ``(<=Ki,)``, albedo ``(<=Ka,)``: missing
    coefficients are zero (None: mean shape / identity / albedo); albedo_detail ``(N, 3)``: the
    colour seen in the video over that albedo, per face vertex (None: none).  The basis
    mesh and the expression meshes come from one batched numpy forward pass
    (float64) in the rest pose; the pass is linear in the expression, so the
    deltas add exactly as Eq. 3.
    """
    body, face = full.body, full.face
    b = _padded(betas, NUM_BETAS)
    ident = _padded(identity, face.sizes["identity"])
    alb = _padded(albedo, face.sizes["albedo"])
    Ke = face.sizes["expression"]
    B = Ke + 1
    rot = np.broadcast_to(np.eye(3), (B, NUM_JOINTS, 3, 3)).copy()
    expr = np.concatenate([np.zeros((1, Ke)), np.eye(Ke)])                       # (Ke+1, Ke): neutral, then each e_k
    verts, _ = full.forward(np.broadcast_to(b.astype(np.float64), (B, NUM_BETAS)).copy(), rot,
                            np.broadcast_to(ident.astype(np.float64), (B, len(ident))).copy(), expr)  # (B, Vm, 3)
    joints = _lbs.shaped_joints(body.J_regressor.astype(np.float64), body.v_template.astype(np.float64),
                                body.shapedirs[..., :NUM_BETAS].astype(np.float64), b[None].astype(np.float64))[0]
    colors = full.vertex_colors(albedo=alb, detail=albedo_detail).astype(np.float32)   # body: the captured skin tone
    out = {
        "format": np.array(AVATAR_FORMAT),
        "version": np.array(AVATAR_FILE_VERSION, np.int64),
        "joint_names": np.array(body.joint_names),
        "parents": np.asarray(body.parents, np.int64),
        "rest_joints": joints,
        "vertices": verts[0].astype(np.float32),
        "faces": np.asarray(full.merged_faces, np.int32),
        "skin_weights": full.skin_weights().astype(np.float32),
        "expression_names": np.array(face.exp_names, dtype=str).reshape(-1),
        "expression_deltas": (verts[1:] - verts[:1]).astype(np.float32),
        "colors": colors,
        "betas": b, "identity": ident, "albedo": alb,
        "num_body_vertices": np.array(full.num_body_vertices, np.int64),
        "source": np.array(f"{body.source} + {face.source}"),
    }
    lm = np.asarray(face.landmarks68, np.int64)[36:48]
    if (lm >= 0).all():      # eyeballs: [person's right, left] (iBUG 36-41, 42-47) on the rest mesh
        from .full_model import eye_spheres

        out["eyes"] = eye_spheres(verts[0][full.num_body_vertices + lm].reshape(2, 6, 3),
                                  verts[0][full.face_vertex_slice]).astype(np.float32)
    return out


def write_avatar_file(path: Path | str, arrays: dict[str, np.ndarray]) -> Path:
    """Write :func:`avatar_arrays` to ``path`` (``.npz``, no pickle), atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    tmp.replace(path)
    return path


def read_avatar_file(path: Path | str) -> dict[str, np.ndarray]:
    """Read and check an avatar file; errors name the file and field (:class:`ModelFileError`)."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        raise ModelFileError(src, None, "does not exist")
    a = load_npz(path, what="avatar .npz")
    if str(a.get("format", "")) != AVATAR_FORMAT:
        raise ModelFileError(src, "format", f"is not '{AVATAR_FORMAT}' (not an avatar file)")
    if int(a.get("version", -1)) != AVATAR_FILE_VERSION:
        raise ModelFileError(src, "version", f"is {int(a.get('version', -1))}, this runtime reads {AVATAR_FILE_VERSION}")
    for k in ("joint_names", "parents", "rest_joints", "vertices", "faces", "skin_weights", "expression_names",
              "expression_deltas", "colors", "betas", "num_body_vertices", "source"):
        if k not in a:
            raise ModelFileError(src, k, "is missing")
    for k, v in a.items():
        if k not in _STRINGS and not np.issubdtype(v.dtype, np.number):
            raise ModelFileError(src, k, f"has non-numeric dtype {v.dtype}")
    if tuple(a["joint_names"].tolist()) != JOINT_NAMES:
        raise ModelFileError(src, "joint_names", "are not the 52 SMPL-H joints in official order")
    V, E = len(a["vertices"]), len(a["expression_names"])
    shapes = {"parents": (NUM_JOINTS,), "rest_joints": (NUM_JOINTS, 3), "vertices": (V, 3), "faces": (None, 3),
              "skin_weights": (V, NUM_JOINTS), "expression_deltas": (E, V, 3), "colors": (V, 3),
              "betas": (NUM_BETAS,)}
    for k, shape in shapes.items():
        arr = a[k]
        if arr.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ModelFileError(src, k, f"has shape {arr.shape}, expected {want}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise ModelFileError(src, k, "has NaN/inf values")
    if a["faces"].size and (a["faces"].min() < 0 or a["faces"].max() >= V):
        raise ModelFileError(src, "faces", f"has vertex ids outside 0..{V - 1}")
    return a
