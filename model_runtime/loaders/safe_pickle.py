"""A restricted unpickler for model files (SMPL-H ``.pkl`` from the MANO site).

Official SMPL/SMPL-H pickles were written by Python 2 with chumpy objects
inside (``chumpy.ch.Ch`` holding ``v_template``, ``shapedirs``...) and a
``scipy.sparse.csc_matrix`` ``J_regressor``.  ``pickle.load`` on such a file
would import chumpy (unmaintained, breaks on modern numpy) and, like any pickle,
can run arbitrary code.  :class:`SafeUnpickler` never imports or calls anything
outside a short allow-list:

* numpy array/dtype/scalar reconstruction helpers;
* ``copyreg._reconstructor`` (``copy_reg`` in Python 2 pickles), only for the
  inert placeholder classes below;
* ``_codecs.encode`` (Python 3 protocol-2 pickles store bytes through it), ``set``
  and ``frozenset`` (chumpy state holds sets);
* chumpy classes (``chumpy.*``) and ``scipy.sparse`` matrices, which are mapped
  to :class:`Placeholder` subclasses that merely record their pickled state.

Any other global raises :class:`~model_runtime.errors.ModelFileError` naming
the file and the refused ``module.name`` *before* anything is called.
:func:`to_plain` then converts placeholders to numpy arrays; a sparse matrix
becomes a dense ``np.ndarray`` built from its pickled ``data``/``indices``/``indptr``
(CSC/CSR) or ``row``/``col`` (COO), so nothing here needs scipy (the loaders
also run in Blender's Python, which has numpy only).
"""
from __future__ import annotations

import _codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError

__all__ = ["Placeholder", "SafeUnpickler", "safe_load_pickle", "to_plain"]


class Placeholder:
    """Inert stand-in for a chumpy object or a scipy sparse matrix.

    Records the pickled ``__setstate__`` argument in :attr:`state` and any
    constructor arguments in :attr:`args`; has no behaviour of its own.
    """

    qualname: str = ""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<placeholder {self.qualname}>"


class ChumpyPlaceholder(Placeholder):
    """A chumpy object (``Ch``, ``reordering.*``, ...): array kept in ``state['x']``."""


class SparsePlaceholder(Placeholder):
    """A ``scipy.sparse`` matrix: ``state`` holds data/indices/indptr/_shape."""


_placeholder_cache: dict[tuple[type, str], type] = {}


def _placeholder_class(base: type, qualname: str) -> type:
    key = (base, qualname)
    if key not in _placeholder_cache:
        _placeholder_cache[key] = type(qualname.rsplit(".", 1)[-1], (base,), {"qualname": qualname})
    return _placeholder_cache[key]


def _safe_reconstructor(cls: type, base: type, state: Any) -> Any:
    """``copyreg._reconstructor`` limited to placeholders and ``object``/ndarray bases."""
    if not (isinstance(cls, type) and issubclass(cls, Placeholder)):
        raise pickle.UnpicklingError(f"copyreg._reconstructor refused for {cls!r}")
    return cls()


_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric")
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): np.core.multiarray._reconstruct for m in _NUMPY_MODULES},
    **{(m, "scalar"): np.core.multiarray.scalar for m in _NUMPY_MODULES},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,
    ("copy_reg", "_reconstructor"): _safe_reconstructor,
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    **{(m, c.__name__): c for m in ("__builtin__", "builtins") for c in (set, frozenset)},
}
_SPARSE_NAMES = ("csc_matrix", "csr_matrix", "coo_matrix")


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals (see module docstring)."""

    def __init__(self, file: io.BufferedIOBase, source: str, encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "chumpy" or module.startswith("chumpy."):
            return _placeholder_class(ChumpyPlaceholder, f"{module}.{name}")
        if module.startswith("scipy.sparse") and name in _SPARSE_NAMES:
            return _placeholder_class(SparsePlaceholder, f"{module}.{name}")
        raise ModelFileError(self.source, None, f"pickle refers to '{module}.{name}', which is not allowed "
                                                "(only numpy arrays, chumpy arrays and scipy sparse matrices are)")


def safe_load_pickle(path: Path | str) -> Any:
    """Load ``path`` with :class:`SafeUnpickler` (Python 2 pickles via ``latin1``) and :func:`to_plain`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(str(path), None, "does not exist") from None
    try:
        obj = SafeUnpickler(io.BytesIO(data), str(path)).load()
    except ModelFileError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
        raise ModelFileError(str(path), None, f"is not a readable pickle (truncated or corrupt: {e})") from e
    return to_plain(obj, str(path))


def to_plain(obj: Any, source: str, field: str | None = None) -> Any:
    """Recursively replace placeholders: chumpy -> ``np.ndarray``, sparse -> dense ``np.ndarray``."""
    if isinstance(obj, dict):
        return {k: to_plain(v, source, str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v, source, field) for v in obj)
    if isinstance(obj, ChumpyPlaceholder):
        state = obj.state if isinstance(obj.state, dict) else {}
        if "x" in state:
            return np.asarray(to_plain(state["x"], source, field))
        raise ModelFileError(source, field, f"is a chumpy expression ({obj.qualname}) without a stored value 'x'")
    if isinstance(obj, SparsePlaceholder):
        return _sparse_from_state(obj, source, field)
    return obj


def _sparse_from_state(obj: SparsePlaceholder, source: str, field: str | None) -> np.ndarray:
    """Dense ``(M, N)`` array of a pickled scipy CSC/CSR/COO matrix (duplicates summed, as ``toarray``)."""
    st = obj.state if isinstance(obj.state, dict) else {}
    kind = obj.qualname.rsplit(".", 1)[-1]
    try:
        shape = tuple(int(n) for n in st.get("_shape", st.get("shape")))
        if len(shape) != 2 or min(shape) < 0:
            raise ValueError(f"shape {shape} is not 2-D")
        data = np.asarray(st["data"])
        if not np.issubdtype(data.dtype, np.number):
            raise ValueError(f"data has dtype {data.dtype}")
        if kind == "coo_matrix":
            coords = st["coords"] if "coords" in st else (st["row"], st["col"])  # scipy >= 1.13 stores coords
            rows, cols = (np.asarray(c, np.int64).reshape(-1) for c in coords)
        else:
            indices = np.asarray(st["indices"], np.int64).reshape(-1)
            indptr = np.asarray(st["indptr"], np.int64).reshape(-1)
            n_major = shape[1] if kind == "csc_matrix" else shape[0]
            if len(indptr) != n_major + 1 or indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != len(indices):
                raise ValueError(f"indptr of length {len(indptr)} does not index {len(indices)} entries "
                                 f"in {n_major} {'columns' if kind == 'csc_matrix' else 'rows'}")
            major = np.repeat(np.arange(n_major), np.diff(indptr))
            rows, cols = (indices, major) if kind == "csc_matrix" else (major, indices)
        data = data.reshape(-1)
        if not len(rows) == len(cols) == len(data):
            raise ValueError(f"{len(data)} values for {len(rows)} row and {len(cols)} column indices")
        if len(rows) and (rows.min() < 0 or rows.max() >= shape[0] or cols.min() < 0 or cols.max() >= shape[1]):
            raise ValueError(f"indices outside the shape {shape}")
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(source, field, f"is a malformed sparse matrix ({e})") from e
    dense = np.zeros(shape, data.dtype)
    np.add.at(dense, (rows, cols), data)
    return dense
