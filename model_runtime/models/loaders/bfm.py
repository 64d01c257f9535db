"""Basel Face Model loaders -> :class:`~model_runtime.models.face_model.FaceModel` (``kind="bfm"``).

Two layouts are read (``N`` vertices):

``BFM_model_front.mat`` (MoFA-derived work, Deep3DFaceRecon)::

    meanshape (1, 3N)   idBase (3N, 80)   exBase (3N, 64)      decimetres
    meantex   (1, 3N)   texBase (3N, 80)                       0..255
    tri (F, 3) 1-based  keypoints (1, 68) 1-based (iBUG-68 vertex ids)

  Deep3DFaceRecon builds it from BFM 2009 by dividing micrometres by 1e5
  ("unify the scale to decimeter"), with the bases already scaled by their
  standard deviations; so metres = value * 0.1.

Basel 2009 ``01_MorphableModel.mat`` (+ a separate expression basis)::

    shapeMU (3N, 1)  shapePC (3N, 199)  shapeEV (199, 1)       micrometres
    texMU   (3N, 1)  texPC   (3N, 199)  texEV   (199, 1)       0..255
    tl (F, 3) 1-based

  BFM 2009 has no expression basis; pass ``expression_basis``: 3DDFA's
  ``Exp_Pca.bin`` (int32 ``d``, float32 mean ``(3n,)``, float32 basis ``d x 3n``;
  optional ``std_exp.txt`` beside it scales the components) or an ``.npz``/``.mat``
  with ``basis (3n, d)`` and optional ``ev (d,)``, in the shape model's units.  If
  ``n != N`` (Exp_Pca.bin has 53215 vertices, BFM 2009 has 53490) a
  ``BFM_exp_idx.mat`` (``trimIndex``, 1-based) beside the expression file selects
  the ``n`` shape vertices and the model is cropped to them.  The bases are scaled
  by their standard deviations (as Deep3DFaceRecon does) and truncated to the
  paper's 80 identity / 64 expression / 80 albedo components.

Coordinates: Y up, the face looks along +Z (both layouts); albedo 0..1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Final, Mapping

import numpy as np

from ...core.errors import ModelFileError
from ..face_model import FaceModel
from ...core.safe_npz import load_npz

__all__ = ["load_bfm", "read_expression_basis", "NUM_ID", "NUM_EXP", "NUM_ALBEDO"]

NUM_ID: Final[int] = 80
NUM_EXP: Final[int] = 64
NUM_ALBEDO: Final[int] = 80
DECIMETRE: Final[float] = 0.1
MICROMETRE: Final[float] = 1e-6
#: a plausible face (bounding-box diagonal in metres) - catches unit mistakes
_FACE_EXTENT_M: Final[tuple[float, float]] = (0.05, 1.0)


def load_bfm(path: Path | str, expression_basis: Path | str | None = None) -> FaceModel:
    """Read ``BFM_model_front.mat`` or ``01_MorphableModel.mat`` (+ ``expression_basis``)."""
    path = Path(path)
    m = _loadmat(path)
    if "meanshape" in m:
        return _front_layout(m, str(path))
    if "shapeMU" in m:
        if expression_basis is None:
            raise ModelFileError(str(path), "expression basis", "Basel 2009 has no expressions; give an expression "
                                 "basis file (Exp_Pca.bin, or .npz/.mat with 'basis')")
        return _basel2009_layout(m, str(path), Path(expression_basis))
    raise ModelFileError(str(path), "meanshape", "is missing (neither the BFM_model_front layout with 'meanshape' "
                         "nor the Basel 2009 layout with 'shapeMU')")


def _loadmat(path: Path) -> dict:
    """All variables of a MATLAB v5/v7 file (scipy.io; the only loader that needs scipy)."""
    if not path.exists():
        raise ModelFileError(str(path), None, "does not exist")
    try:
        import scipy.io
    except ImportError as e:  # e.g. Blender's own Python: the add-on converts through the runtime instead
        raise ModelFileError(str(path), None, f"needs scipy to be read, which this Python lacks ({e}); "
                             "convert it with 'python -m model_runtime model export --format npz'") from e
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError as e:  # MATLAB v7.3 (HDF5)
        raise ModelFileError(str(path), None, f"is a MATLAB v7.3 file; save it with -v7 ({e})") from e
    except (MemoryError, RecursionError) as e:  # sizes or nesting declared by a corrupt or hostile file
        raise ModelFileError(str(path), None, f"is not a readable .mat file ({type(e).__name__}: "
                             f"{e or 'declares more data than fits in memory'})") from e
    except Exception as e:  # noqa: BLE001 - scipy raises many types on truncated/corrupt files
        raise ModelFileError(str(path), None, f"is not a readable .mat file (truncated or corrupt: {e})") from e


def _get(m: Mapping, src: str, name: str, shape: tuple) -> np.ndarray:
    """Field ``name`` as float/int array checked against ``shape`` (None = any)."""
    if name not in m:
        raise ModelFileError(src, name, "is missing")
    arr = np.asarray(m[name])
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ModelFileError(src, name, f"has non-numeric dtype {arr.dtype}")
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ModelFileError(src, name, f"has shape {arr.shape}, expected {want}")
    return arr


def _row_or_col(m: Mapping, src: str, name: str) -> np.ndarray:
    """A vector stored as ``(1, n)`` or ``(n, 1)`` -> ``(n,)``."""
    if name not in m:
        raise ModelFileError(src, name, "is missing")
    arr = np.asarray(m[name])
    if arr.ndim != 2 or min(arr.shape) != 1 or not np.issubdtype(arr.dtype, np.number):
        raise ModelFileError(src, name, f"has shape {arr.shape} ({arr.dtype}), expected a (1, n) or (n, 1) vector")
    return arr.reshape(-1)


def _triangles(m: Mapping, src: str, name: str, n_vertices: int) -> np.ndarray:
    tri = _get(m, src, name, (None, 3)).astype(np.int64) - 1
    if tri.size and (tri.min() < 0 or tri.max() >= n_vertices):
        raise ModelFileError(src, name, f"has indices outside 1..{n_vertices} (expected 1-based vertex ids)")
    return tri.astype(np.int32)


def _basis(flat: np.ndarray, n: int) -> np.ndarray:
    """``(3N, K)`` (x, y, z interleaved per vertex) -> ``(N, 3, K)``."""
    return flat.reshape(n, 3, flat.shape[1])


def _check_extent(mean: np.ndarray, src: str, field: str, unit: str) -> None:
    diag = float(np.linalg.norm(mean.max(0) - mean.min(0)))
    lo, hi = _FACE_EXTENT_M
    if not lo <= diag <= hi:
        raise ModelFileError(src, field, f"gives a face {diag:.4g} m across after {unit} -> metres; "
                             "the file is not in this layout's units")


def _front_layout(m: Mapping, src: str) -> FaceModel:
    mean = _row_or_col(m, src, "meanshape")
    if mean.size % 3:
        raise ModelFileError(src, "meanshape", f"has {mean.size} values, not a multiple of 3")
    N = mean.size // 3
    id_b = _get(m, src, "idBase", (3 * N, None))
    ex_b = _get(m, src, "exBase", (3 * N, None))
    tex = _row_or_col(m, src, "meantex")
    if tex.size != 3 * N:
        raise ModelFileError(src, "meantex", f"has {tex.size} values, expected {3 * N}")
    tex_b = _get(m, src, "texBase", (3 * N, None))
    tri = _triangles(m, src, "tri", N)
    kp = _row_or_col(m, src, "keypoints").astype(np.int64) - 1
    if kp.size != 68 or kp.min() < 0 or kp.max() >= N:
        raise ModelFileError(src, "keypoints", f"must be 68 1-based vertex ids in 1..{N}")
    mean_shape = mean.reshape(N, 3) * DECIMETRE
    _check_extent(mean_shape, src, "meanshape", "decimetres")
    ke = ex_b.shape[1]
    return FaceModel(
        kind="bfm",
        mean_shape=mean_shape.astype(np.float32),
        id_basis=(_basis(id_b, N) * DECIMETRE).astype(np.float32),
        exp_basis=(_basis(ex_b, N) * DECIMETRE).astype(np.float32),
        exp_names=tuple(f"exp_{i:03d}" for i in range(ke)),
        mean_albedo=(tex.reshape(N, 3) / 255.0).astype(np.float32),
        albedo_basis=(_basis(tex_b, N) / 255.0).astype(np.float32),
        faces=tri,
        landmarks68=kp,
        source=src,
        extras={"layout": "BFM_model_front", "units_in_file": "decimetre"},
    )


def _basel2009_layout(m: Mapping, src: str, exp_path: Path) -> FaceModel:
    mu = _row_or_col(m, src, "shapeMU")
    if mu.size % 3:
        raise ModelFileError(src, "shapeMU", f"has {mu.size} values, not a multiple of 3")
    N = mu.size // 3
    pc = _get(m, src, "shapePC", (3 * N, None))
    ev = _row_or_col(m, src, "shapeEV")
    if ev.size != pc.shape[1]:
        raise ModelFileError(src, "shapeEV", f"has {ev.size} values for {pc.shape[1]} components of 'shapePC'")
    tmu = _row_or_col(m, src, "texMU")
    if tmu.size != 3 * N:
        raise ModelFileError(src, "texMU", f"has {tmu.size} values, expected {3 * N}")
    tpc = _get(m, src, "texPC", (3 * N, None))
    tev = _row_or_col(m, src, "texEV")
    if tev.size != tpc.shape[1]:
        raise ModelFileError(src, "texEV", f"has {tev.size} values for {tpc.shape[1]} components of 'texPC'")
    tri = _triangles(m, src, "tl", N)

    exp_basis, keep = read_expression_basis(exp_path, N)  # (n, 3, Ke) in file units, vertex ids (n,)
    mean_shape = mu.reshape(N, 3) * MICROMETRE
    _check_extent(mean_shape, src, "shapeMU", "micrometres")
    id_basis = _basis(pc[:, :NUM_ID] * ev[None, :NUM_ID], N) * MICROMETRE
    albedo_basis = _basis(tpc[:, :NUM_ALBEDO] * tev[None, :NUM_ALBEDO], N) / 255.0
    mean_albedo = tmu.reshape(N, 3) / 255.0
    if keep is not None:  # crop to the expression basis' vertices
        remap = np.full(N, -1, np.int64)
        remap[keep] = np.arange(keep.size)
        tri = remap[tri]
        tri = tri[(tri >= 0).all(1)].astype(np.int32)
        mean_shape, id_basis, mean_albedo, albedo_basis = (a[keep] for a in (mean_shape, id_basis, mean_albedo,
                                                                             albedo_basis))
    ke = exp_basis.shape[2]
    return FaceModel(
        kind="bfm",
        mean_shape=mean_shape.astype(np.float32),
        id_basis=id_basis.astype(np.float32),
        exp_basis=(exp_basis * MICROMETRE).astype(np.float32),
        exp_names=tuple(f"exp_{i:03d}" for i in range(ke)),
        mean_albedo=mean_albedo.astype(np.float32),
        albedo_basis=albedo_basis.astype(np.float32),
        faces=tri,
        landmarks68=np.full(68, -1, np.int64),
        source=src,
        extras={"layout": "Basel2009", "units_in_file": "micrometre", "expression_basis": str(exp_path)},
    )


def read_expression_basis(path: Path, n_shape: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Expression basis ``(n, 3, Ke)`` (std-scaled, file units, Ke <= 64) and the shape-vertex ids it covers.

    The ids are None when ``n == n_shape``; otherwise they come from
    ``BFM_exp_idx.mat`` (``trimIndex``) beside ``path``.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(str(path), None, "does not exist (expression basis)")
    suffix = path.suffix.lower()
    if suffix == ".bin":
        flat, ev = _read_exp_pca_bin(path)
    elif suffix in (".npz", ".mat"):
        fields = load_npz(path, ("basis",), optional=("ev",)) if suffix == ".npz" else _loadmat(path)
        flat = _get(fields, str(path), "basis", (None, None))
        ev = fields.get("ev")
        if ev is not None:
            ev = np.asarray(ev, np.float64).reshape(-1)
            if ev.size != flat.shape[1]:
                raise ModelFileError(str(path), "ev", f"has {ev.size} values for {flat.shape[1]} components")
    else:
        raise ModelFileError(str(path), None, "expression basis must be .bin (Exp_Pca), .npz or .mat")
    if flat.shape[0] % 3:
        raise ModelFileError(str(path), "basis", f"has {flat.shape[0]} rows, not a multiple of 3")
    n = flat.shape[0] // 3
    if ev is not None:
        flat = flat * ev[None]
    basis = _basis(flat[:, :NUM_EXP].astype(np.float64), n)
    if n == n_shape:
        return basis, None
    idx_file = path.parent / "BFM_exp_idx.mat"
    if not idx_file.exists():
        raise ModelFileError(str(path), "basis", f"covers {n} vertices, the shape model has {n_shape}; "
                             f"{idx_file} (trimIndex) is needed to match them")
    idx = _row_or_col(_loadmat(idx_file), str(idx_file), "trimIndex").astype(np.int64) - 1
    if idx.size != n or idx.min() < 0 or idx.max() >= n_shape:
        raise ModelFileError(str(idx_file), "trimIndex", f"must hold {n} 1-based ids in 1..{n_shape}")
    return basis, idx


def _read_exp_pca_bin(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """3DDFA ``Exp_Pca.bin`` -> basis ``(3n, d)`` and std devs from ``std_exp.txt`` (or None)."""
    raw = path.read_bytes()
    if len(raw) < 4:
        raise ModelFileError(str(path), "exp_dim", "file is truncated (no header)")
    d = int(np.frombuffer(raw[:4], np.int32)[0])
    n_floats = (len(raw) - 4) // 4
    if d <= 0 or (len(raw) - 4) % 4 or n_floats % (3 * (d + 1)):
        raise ModelFileError(str(path), "expPC", f"size {len(raw)} bytes does not fit int32 d={d} + float32 "
                             "mean (3n) + basis (d x 3n): truncated or not an Exp_Pca.bin")
    n3 = n_floats // (d + 1)
    data = np.frombuffer(raw[4:], np.float32)
    pc = data[n3:].reshape(d, n3).T  # (3n, d)
    ev = None
    std_file = path.parent / "std_exp.txt"
    if std_file.exists():
        ev = np.loadtxt(std_file).reshape(-1)
        if ev.size != d:
            raise ModelFileError(str(std_file), None, f"has {ev.size} values for {d} expression components")
    return pc, ev
