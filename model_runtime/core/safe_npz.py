"""Reading ``.npz`` files that may be hostile (numpy + standard library only; Blender imports it).

``np.load`` on an ``.npz`` trusts the file: an ``.npy`` header may declare a
terabyte array (``MemoryError`` or a huge allocation), a zip member may inflate
a few MB into gigabytes (a decompression bomb, read in full before anything
fails), an object array raises a bare ``ValueError``.  :func:`load_npz` checks
what every member *declares* before reading or allocating anything, and turns
every failure into :class:`~model_runtime.core.errors.ModelFileError` naming the
file and the array (``field``).

An ``.npz`` is a zip archive of ``<key>.npy`` members (``np.savez`` stores them
uncompressed, ``np.savez_compressed`` deflates them).  For each member read:

1. zip directory only: a member that declares more than :data:`BOMB_MIN_BYTES`
   uncompressed and more than :data:`BOMB_RATIO` times its compressed size is
   refused as a decompression bomb, and so are selected members whose declared
   total exceeds both :data:`BOMB_MIN_BYTES` and :data:`BOMB_RATIO` times the
   archive's size on disk.  ``np.savez`` stores data uncompressed (ratio 1)
   and real float data never deflates 100:1; only long runs of one byte do;
2. the ``.npy`` header alone (at most :data:`MAX_HEADER_BYTES`, as ``np.load``):
   object dtypes are refused (reading them needs pickle), and the header length
   plus the declared data size ``prod(shape) * itemsize`` (Python ints, no
   overflow) must equal the member's declared uncompressed size, which
   ``zipfile`` never reads past;
3. the declared data sizes of all selected members must sum to at most
   ``max_bytes``.

Only then are the arrays read (``np.lib.format.read_array``, no pickle).
"""
from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import Final, Iterable, NamedTuple

import numpy as np

from .errors import ModelFileError

__all__ = ["BOMB_MIN_BYTES", "BOMB_RATIO", "DEFAULT_MAX_BYTES", "MAX_HEADER_BYTES", "load_npz", "npz_members"]

DEFAULT_MAX_BYTES: Final[int] = 4 << 30   # all arrays read by one call
BOMB_MIN_BYTES: Final[int] = 64 << 20     # smaller members may compress as well as they like
BOMB_RATIO: Final[int] = 100              # uncompressed / compressed size above which large members are refused
MAX_HEADER_BYTES: Final[int] = 10000      # np.load's own max_header_size
_NPY_SUFFIX: Final[str] = ".npy"
_LENGTH_BYTES: Final[dict[tuple[int, int], int]] = {(1, 0): 2, (2, 0): 4}


class _Header(NamedTuple):
    """What a member's ``.npy`` header declares (``nbytes``: data bytes after the header)."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def npz_members(path: Path | str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{key: (shape, dtype)}`` of every member, from the ``.npy`` headers only (no array data is read).

    Object dtypes are listed (not refused); damaged headers raise :class:`ModelFileError`.
    """
    zf, _ = _open_zip(Path(path))
    with zf:
        headers = {key: _read_header(zf, info, str(path), key, objects_ok=True)
                   for key, info in _members(zf).items()}
    return {key: (h.shape, h.dtype) for key, h in headers.items()}


def load_npz(path: Path | str, keys: Iterable[str] | None = None, *, optional: Iterable[str] = (),
             max_bytes: int = DEFAULT_MAX_BYTES, what: str = ".npz") -> dict[str, np.ndarray]:
    """Read arrays of the ``.npz`` ``path`` -> ``{key: array}`` after the checks of the module docstring.

    ``keys``: the arrays to read (None: all members); one that is absent raises
    :class:`ModelFileError` naming it.  ``optional``: further arrays read only
    when present.  Members not selected are not touched.  Every failure (no
    such file, not a zip, truncated, CRC error, malformed header, object dtype,
    bomb, ``max_bytes`` exceeded, out of memory) is a :class:`ModelFileError`
    naming the file and, where there is one, the array.  ``what`` names the
    kind of file in "is not a readable <what>" (a file that is not a zip archive).
    """
    path = Path(path)
    src = str(path)
    zf, archive_size = _open_zip(path, what)
    with zf:
        members = _members(zf)
        wanted = list(members) if keys is None else list(dict.fromkeys(keys))
        for key in wanted:
            if key not in members:
                raise ModelFileError(src, key, "is missing")
        wanted += [k for k in dict.fromkeys(optional) if k in members and k not in wanted]
        infos = [members[k] for k in wanted]
        for key, info in zip(wanted, infos):
            _check_ratio(src, key, info.file_size, info.compress_size)
        _check_ratio(src, None, sum(i.file_size for i in infos), archive_size, "the archive")
        headers = {key: _read_header(zf, info, src, key) for key, info in zip(wanted, infos)}
        total = sum(h.nbytes for h in headers.values())
        if total > max_bytes:
            raise ModelFileError(src, None, f"declares {total} bytes of arrays, more than the limit of "
                                            f"{max_bytes} bytes")
        return {key: _read_array(zf, h, src, key) for key, h in headers.items()}


def _open_zip(path: Path, what: str = ".npz") -> tuple[zipfile.ZipFile, int]:
    """The archive and its size in bytes."""
    try:
        size = path.stat().st_size
        return zipfile.ZipFile(path), size
    except FileNotFoundError:
        raise ModelFileError(str(path), None, "does not exist") from None
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        raise ModelFileError(str(path), None, f"is not a readable {what} (truncated or corrupt: {e})") from e
    except Exception as e:  # noqa: BLE001 - a directory, no permission, I/O error, out of memory...
        raise ModelFileError(str(path), None, f"cannot be opened as a {what} ({type(e).__name__}: {e})") from e


def _members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Key (member name without ``.npy``, as ``np.load``) -> zip entry; a repeated name: the last one."""
    return {info.filename.removesuffix(_NPY_SUFFIX): info for info in zf.infolist()}


def _check_ratio(src: str, key: str | None, size: int, packed: int, store: str = "its zip member") -> None:
    if size > BOMB_MIN_BYTES and size > BOMB_RATIO * max(packed, 1):
        raise ModelFileError(src, key, f"declares {size} bytes stored in {packed} bytes of {store} "
                                       f"(more than {BOMB_RATIO}:1): refused as a decompression bomb")


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, src: str, key: str,
                 objects_ok: bool = False) -> _Header:
    """Parse ``info``'s ``.npy`` header (bounded read); check its sizes against the zip entry, refuse objects."""
    try:
        with zf.open(info) as fp:
            try:
                version = np.lib.format.read_magic(fp)
            except ValueError as e:
                raise ModelFileError(src, key, f"is not an .npy array ({e})") from e
            if version not in _LENGTH_BYTES:
                raise ModelFileError(src, key, f"uses .npy format version {version[0]}.{version[1]}, "
                                               "which this reader does not support")
            length = fp.read(_LENGTH_BYTES[version])
            header_len = int.from_bytes(length, "little")
            if header_len > MAX_HEADER_BYTES:
                raise ModelFileError(src, key, f"has a {header_len}-byte .npy header "
                                               f"(more than {MAX_HEADER_BYTES}): refused")
            header = fp.read(header_len)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = reader(io.BytesIO(length + header))
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError, ValueError, RecursionError...
        raise ModelFileError(src, key, f"has a malformed .npy header (truncated or corrupt: "
                                       f"{type(e).__name__}: {e})") from e
    prefix = 8 + len(length) + header_len  # magic and version, header length, header
    if dtype.hasobject:  # the data is a pickle of unknown size
        if not objects_ok:
            raise ModelFileError(src, key, f"holds Python objects (dtype {dtype}), "
                                           "which cannot be read without pickle")
        return _Header(info, tuple(int(n) for n in shape), dtype, info.file_size - prefix)
    nbytes = math.prod(int(n) for n in shape) * int(dtype.itemsize)
    if prefix + nbytes != info.file_size:
        raise ModelFileError(src, key, f"declares shape {tuple(shape)} of {dtype} ({nbytes} bytes) but its zip "
                                       f"member holds {info.file_size} bytes: truncated or corrupt")
    return _Header(info, tuple(int(n) for n in shape), dtype, nbytes)


def _read_array(zf: zipfile.ZipFile, h: _Header, src: str, key: str) -> np.ndarray:
    try:
        with zf.open(h.info) as fp:
            arr = np.lib.format.read_array(fp, allow_pickle=False, max_header_size=MAX_HEADER_BYTES)
            if fp.read(1):  # never: the sizes were checked; reaching the end also checks the CRC
                raise ValueError("data after the array")
        return arr
    except Exception as e:  # noqa: BLE001 - BadZipFile (CRC), zlib.error, EOFError, OSError, MemoryError...
        raise ModelFileError(src, key, f"cannot be read (truncated or corrupt: {type(e).__name__}: {e})") from e
