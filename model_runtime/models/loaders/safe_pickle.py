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

Any other global raises :class:`~model_runtime.core.errors.ModelFileError` naming
the file and the refused ``module.name`` *before* anything is called.
:func:`to_plain` then converts placeholders to numpy arrays; a sparse matrix
becomes a dense ``np.ndarray`` built from its pickled ``data``/``indices``/``indptr``
(CSC/CSR) or ``row``/``col`` (COO), so nothing here needs scipy (the loaders
also run in Blender's Python, which has numpy only).

Hostile files: arrays are only built from bytes stored in the file (``numpy.ndarray``
cannot be called), a densified sparse matrix holds at most :data:`MAX_DENSE_ELEMENTS`,
nesting deeper than :data:`MAX_DEPTH` is refused, and every failure (including
``MemoryError``/``RecursionError``) is a :class:`ModelFileError` naming the file.
"""
from __future__ import annotations

import _codecs
import io
import math
import pickle
from pathlib import Path
from typing import Any, Final

import numpy as np

from ...core.errors import ModelFileError

__all__ = ["MAX_DENSE_ELEMENTS", "MAX_DEPTH", "Placeholder", "SafeUnpickler", "safe_load_pickle", "to_plain"]


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


class _NdarrayClass:
    """What ``numpy.ndarray`` resolves to: only :func:`_reconstruct_array` accepts it, and calling it
    fails, so a pickle cannot allocate an array of a shape it merely names (``ndarray((2**40,))``)."""

    __slots__ = ()


def _reconstruct_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` as pickled arrays use it: an empty ndarray that BUILD then fills
    from the bytes stored in the file (numpy always pickles the shape ``(0,)`` here)."""
    if subtype is not _NdarrayClass:
        raise pickle.UnpicklingError(f"numpy _reconstruct refused for {subtype!r}")
    if math.prod(int(n) for n in shape) > 1:
        raise pickle.UnpicklingError(f"numpy _reconstruct refused for the initial shape {tuple(shape)}")
    return np.core.multiarray._reconstruct(np.ndarray, shape, dtype)


_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                  "numpy._core.numeric")
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _reconstruct_array for m in _NUMPY_MODULES},
    **{(m, "scalar"): np.core.multiarray.scalar for m in _NUMPY_MODULES},
    ("numpy", "ndarray"): _NdarrayClass,
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
    """Load ``path`` with :class:`SafeUnpickler` (Python 2 pickles via ``latin1``) and :func:`to_plain`.

    Every failure (truncated or corrupt data, a refused global, out of memory,
    nesting deeper than :data:`MAX_DEPTH`) is a :class:`ModelFileError` naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(str(path), None, "does not exist") from None
    except (OSError, MemoryError) as e:
        raise ModelFileError(str(path), None, f"cannot be read ({type(e).__name__}: {e})") from e
    try:
        obj = SafeUnpickler(io.BytesIO(data), str(path)).load()
    except ModelFileError:
        raise
    except (MemoryError, RecursionError) as e:
        raise ModelFileError(str(path), None, f"is not a readable pickle ({type(e).__name__}: "
                             f"{e or 'declares more data than fits in memory'})") from e
    except Exception as e:  # noqa: BLE001 - EOFError, UnpicklingError, struct/Value/TypeError... from the data
        raise ModelFileError(str(path), None, f"is not a readable pickle (truncated or corrupt: {e})") from e
    return to_plain(obj, str(path))


#: deepest nesting of containers/placeholders :func:`to_plain` accepts (model pickles use < 10)
MAX_DEPTH: Final[int] = 100
#: largest densified sparse matrix (SMPL-H ``J_regressor``: 52 x 6890 = 358k)
MAX_DENSE_ELEMENTS: Final[int] = 1 << 27


def to_plain(obj: Any, source: str, field: str | None = None) -> Any:
    """Replace placeholders: chumpy -> ``np.ndarray``, sparse -> dense ``np.ndarray``; dicts, lists
    and tuples are rebuilt around the converted values.

    Each distinct object is converted once (a pickle may share one list many
    times: no exponential walk); nesting deeper than :data:`MAX_DEPTH` (or a
    cycle) raises :class:`ModelFileError` instead of ``RecursionError``.
    """
    done: dict[int, Any] = {}

    def plain(o: Any, field: str | None, depth: int) -> Any:
        if not isinstance(o, (dict, list, tuple, Placeholder)):
            return o
        if id(o) in done:
            return done[id(o)]
        if depth > MAX_DEPTH:
            raise ModelFileError(source, field, f"is nested more than {MAX_DEPTH} levels deep (or cyclic): "
                                                "not a model file")
        if isinstance(o, dict):
            out = {k: plain(v, str(k), depth + 1) for k, v in o.items()}
        elif isinstance(o, (list, tuple)):
            out = type(o)([plain(v, field, depth + 1) for v in o])
        elif isinstance(o, ChumpyPlaceholder):
            state = o.state if isinstance(o.state, dict) else {}
            if "x" not in state:
                raise ModelFileError(source, field, f"is a chumpy expression ({o.qualname}) without a stored value 'x'")
            out = np.asarray(plain(state["x"], field, depth + 1))
        elif isinstance(o, SparsePlaceholder):
            out = _sparse_from_state(o, source, field)
        else:
            out = o
        done[id(o)] = out
        return out

    return plain(obj, field, 0)


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
        if shape[0] * shape[1] > MAX_DENSE_ELEMENTS:
            raise ValueError(f"shape {shape} is larger than {MAX_DENSE_ELEMENTS} dense elements")
    except (KeyError, TypeError, ValueError, OverflowError, MemoryError) as e:
        raise ModelFileError(source, field, f"is a malformed sparse matrix ({e})") from e
    dense = np.zeros(shape, data.dtype)
    np.add.at(dense, (rows, cols), data)
    return dense
