"""Official SMPL-H loader: AMASS-style ``model.npz`` and the MANO-site ``.pkl``.

Both files hold the same fields (``V`` vertices, 52 joints, ``P = 459`` pose
features)::

    v_template    (V, 3)            metres
    shapedirs     (V, 3, K)         K = 16 (AMASS npz) or 10 (MANO-site pkl)
    posedirs      (V, 3, 459)       pose correctives, 9 * 51 features
    J_regressor   (52, V)           dense (npz) or scipy.sparse csc (pkl; densified by safe_pickle)
    weights       (V, 52)
    kintree_table (2, 52)           row 0 = parent ids (root: -1 or 2**32-1)
    f             (F, 3)            triangles, 0-based

The ``.pkl`` stores ``v_template``/``shapedirs`` as chumpy objects and is read
with :mod:`.safe_pickle` (no chumpy, no scipy, no code execution).  The result is a
:class:`~model_runtime.models.body_model.BodyModel` with ``kind="smplh"``: ``posedirs``
reshaped to ``(459, V*3)`` (the layout :func:`lbs.lbs` multiplies by), ``J_regressor``
densified, ``shapedirs`` truncated (or zero-padded) to 16 components, and for the
6890-vertex SMPL-H mesh the keypoint vertex ids of :data:`SMPLH_KEYPOINT_VERTICES`
in ``extras["keypoint_vertices"]``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Final, Mapping

import numpy as np

from ..body_model import BodyModel
from ...core.errors import ModelFileError
from ...core.safe_npz import load_npz
from ...core.skeleton import NUM_BETAS, NUM_JOINTS, PARENTS
from .safe_pickle import safe_load_pickle

__all__ = ["SMPLH_NUM_VERTICES", "SMPLH_KEYPOINT_VERTICES", "load_smplh", "smplh_from_fields"]

SMPLH_NUM_VERTICES: Final[int] = 6890
NUM_POSE_FEATURES: Final[int] = 9 * (NUM_JOINTS - 1)

#: SMPL-H vertex ids of the extended body keypoints and the MANO fingertips
#: (same ids as ``vertex_ids['smplh']`` of the smplx package; fingertips are
#: the "*4" entries of :data:`skeleton.HAND21_NAMES`).
SMPLH_KEYPOINT_VERTICES: Final[dict[str, int]] = {
    "nose": 332, "right_eye": 6260, "left_eye": 2800, "right_ear": 4071, "left_ear": 583,
    "left_big_toe": 3216, "left_heel": 3387, "right_big_toe": 6617, "right_heel": 6787,
    "left_thumb4": 2746, "left_index4": 2319, "left_middle4": 2445, "left_ring4": 2556, "left_pinky4": 2673,
    "right_thumb4": 6191, "right_index4": 5782, "right_middle4": 5905, "right_ring4": 6016, "right_pinky4": 6133,
}

_REQUIRED: Final[tuple[str, ...]] = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights",
                                     "kintree_table", "f")


def load_smplh(path: Path | str) -> BodyModel:
    """Read an official SMPL-H ``.npz`` or ``.pkl``; errors name the file and field."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(str(path), None, "does not exist")
    if path.suffix.lower() == ".pkl":
        fields = safe_load_pickle(path)
        if not isinstance(fields, dict):
            raise ModelFileError(str(path), None, f"holds a {type(fields).__name__}, expected a dict of SMPL-H fields")
    elif path.suffix.lower() == ".npz":
        fields = _read_npz(path)
    else:
        raise ModelFileError(str(path), None, "is neither an SMPL-H .npz nor a .pkl")
    return smplh_from_fields(fields, str(path))


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The SMPL-H fields of an ``.npz`` (:func:`~model_runtime.core.safe_npz.load_npz`; other members,
    e.g. strings, are not touched; a missing field is reported by :func:`smplh_from_fields`)."""
    return load_npz(path, (), optional=_REQUIRED)


def _field(fields: Mapping, src: str, name: str) -> np.ndarray:
    if name not in fields:
        raise ModelFileError(src, name, "is missing")
    value = fields[name]
    try:
        arr = np.asarray(value)
    except Exception as e:  # noqa: BLE001 - any unconvertible object
        raise ModelFileError(src, name, f"is not an array ({type(value).__name__})") from e
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)):
        raise ModelFileError(src, name, f"has non-numeric dtype {arr.dtype}")
    return arr


def _expect(src: str, name: str, arr: np.ndarray, shape: tuple) -> None:
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ModelFileError(src, name, f"has shape {arr.shape}, expected {want}")


def smplh_from_fields(fields: Mapping, src: str) -> BodyModel:
    """Validate and convert the raw SMPL-H ``fields`` (dict name -> array) read from ``src``."""
    v_template = _field(fields, src, "v_template")
    _expect(src, "v_template", v_template, (None, 3))
    V = v_template.shape[0]

    shapedirs = _field(fields, src, "shapedirs")
    _expect(src, "shapedirs", shapedirs, (V, 3, None))
    k_file = shapedirs.shape[2]
    if k_file >= NUM_BETAS:
        shapedirs = shapedirs[..., :NUM_BETAS]
    else:  # MANO-site pkl: 10 components; the missing ones are zero (beta_10..15 have no effect)
        shapedirs = np.concatenate([shapedirs, np.zeros((V, 3, NUM_BETAS - k_file), shapedirs.dtype)], axis=2)

    posedirs = _field(fields, src, "posedirs")
    _expect(src, "posedirs", posedirs, (V, 3, NUM_POSE_FEATURES))
    posedirs = posedirs.reshape(V * 3, NUM_POSE_FEATURES).T  # (P, V*3)

    J_regressor = _field(fields, src, "J_regressor")
    _expect(src, "J_regressor", J_regressor, (NUM_JOINTS, V))
    weights = _field(fields, src, "weights")
    _expect(src, "weights", weights, (V, NUM_JOINTS))

    kintree = _field(fields, src, "kintree_table")
    _expect(src, "kintree_table", kintree, (2, NUM_JOINTS))
    parents = kintree[0].astype(np.int64)
    parents[parents >= NUM_JOINTS] = -1  # root stored as 2**32 - 1 in uint32 tables
    if not np.array_equal(parents, PARENTS):
        bad = np.nonzero(parents != PARENTS)[0]
        raise ModelFileError(src, "kintree_table", f"parents differ from the SMPL-H tree at joints {bad.tolist()}")

    faces = _field(fields, src, "f")
    _expect(src, "f", faces, (None, 3))

    extras: dict = {"num_betas_in_file": int(k_file)}
    if V == SMPLH_NUM_VERTICES:
        extras["keypoint_vertices"] = dict(SMPLH_KEYPOINT_VERTICES)
    return BodyModel(
        kind="smplh",
        v_template=v_template.astype(np.float32),
        shapedirs=shapedirs.astype(np.float32),
        J_regressor=J_regressor.astype(np.float32),
        weights=weights.astype(np.float32),
        faces=faces.astype(np.int32),
        posedirs=posedirs.astype(np.float32),
        parents=parents,
        source=src,
        extras=extras,
    )
