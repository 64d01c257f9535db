"""Hostile model/asset files: every loader refuses them with a ModelFileError naming the file
(and the array), quickly and without large allocations.

The files are written here for real: object arrays, an ``.npy`` header declaring
1 TiB, a deflate bomb, an absurd header length, truncated and non-zip files, CRC
damage, and pickles nested 200,000 deep, cyclic, shared, or asking numpy for a
huge array.  The deflate bombs are a few hundred MB of zeros (streamed, deflate
level 1 so that writing them stays well under a second); the loaders refuse a
2.4 GB bomb by the same zip-directory check.
"""
from __future__ import annotations

import io
import pickle
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from model_runtime.core.asset_io import read_versioned_npz
from model_runtime.models.avatar_file import read_avatar_file
from model_runtime.core.errors import ModelFileError
from model_runtime.models.loaders import load_smplh, safe_load_pickle
from model_runtime.models.loaders.bfm import read_expression_basis
from model_runtime.detectors.mediapipe import BodyMap
from model_runtime.face.correspondence import load_correspondence_file
from model_runtime.capture.translation import load_calibration
from model_runtime.core.safe_npz import BOMB_MIN_BYTES, load_npz, npz_members

MB = 1 << 20


# ----------------------------------------------------------------- writers
def _npy_header(shape: tuple, descr: str = "<f8") -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": descr, "fortran_order": False, "shape": shape})
    return b.getvalue()


def write_member_npz(path: Path, key: str, head: bytes, data_bytes: int, extra: dict | None = None,
                     deflate: bool = False) -> Path:
    """``extra`` arrays (written normally) plus member ``key.npy`` = ``head`` + ``data_bytes`` zero bytes,
    streamed in 8 MB chunks (never held in memory)."""
    kw = dict(compression=zipfile.ZIP_DEFLATED, compresslevel=1) if deflate else {}
    with zipfile.ZipFile(path, "w", **kw) as zf:
        for k, v in (extra or {}).items():
            with zf.open(k + ".npy", "w") as fp:
                np.lib.format.write_array(fp, np.asarray(v))
        with zf.open(key + ".npy", "w", force_zip64=True) as fp:
            fp.write(head)
            chunk = bytes(8 * MB)
            while data_bytes > 0:
                fp.write(chunk[: min(data_bytes, len(chunk))])
                data_bytes -= len(chunk)
    return path


def write_bomb(path: Path, key: str, nbytes: int, extra: dict | None = None) -> Path:
    """A deflated float64 member of ``nbytes`` zeros with a valid header (about 230:1 at level 1)."""
    return write_member_npz(path, key, _npy_header((nbytes // 8,)), nbytes // 8 * 8, extra, deflate=True)


def _kind_object(path, key, extra):
    np.savez(path, **extra, **{key: np.array([{"a": 1}, None], dtype=object)})


def _kind_tib(path, key, extra):  # header declares (2**40,) float64 = 8 TiB, the data is 16 bytes
    write_member_npz(path, key, _npy_header((2 ** 40,)), 16, extra)


def _kind_bomb(path, key, extra):
    write_bomb(path, key, BOMB_MIN_BYTES + 8 * MB, extra)


def _kind_huge_header(path, key, extra):  # npy 2.0 header length field: 2 GiB
    write_member_npz(path, key, b"\x93NUMPY\x02\x00" + (2 ** 31).to_bytes(4, "little") + b"{", 0, extra)


def _kind_not_zip(path, key, extra):
    path.write_bytes(b"this is a text file pretending to be an npz\n" * 10)


def _kind_truncated(path, key, extra):
    np.savez(path, **extra, **{key: np.arange(1000.0)})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


#: kind -> (writer, the array is named, a phrase of the problem)
KINDS = {
    "object array": (_kind_object, True, "without pickle"),
    "1 TiB header": (_kind_tib, True, "declares shape (1099511627776,)"),
    "deflate bomb": (_kind_bomb, True, "decompression bomb"),
    "2 GiB header": (_kind_huge_header, True, "header"),
    "not a zip": (_kind_not_zip, False, "not a zip file"),
    "truncated": (_kind_truncated, False, "not a zip file"),  # the zip directory at the end is gone
}

_CORR = {"bary": np.zeros((468, 3), np.float32), "weights": np.ones(468, np.float32),
         "model_signature": np.array("x"), "version": np.int64(1)}
#: loader -> (call, the array it reads, arrays it needs besides)
LOADERS = {
    "load_npz": (load_npz, "a", {}),
    "smplh": (load_smplh, "v_template", {}),
    "versioned asset": (lambda p: read_versioned_npz(p, 1, "test asset", ()), "a", {}),
    "avatar": (read_avatar_file, "a", {}),
    "body map": (BodyMap.load, "a", {}),
    "calibration": (lambda p: load_calibration(p, (640, 480)), "K", {}),
    "correspondence": (load_correspondence_file, "vertex_ids", _CORR),
    "expression basis": (lambda p: read_expression_basis(p, 10), "basis", {}),
}


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_npz_loader_refuses_hostile_files(tmp_path, loader, kind):
    call, key, extra = LOADERS[loader]
    write, named, phrase = KINDS[kind]
    path = tmp_path / "hostile.npz"
    write(path, key, extra)
    with pytest.raises(ModelFileError) as ei:
        call(path)
    e = ei.value
    assert e.path == str(path) and str(path) in str(e)
    assert phrase in str(e)
    if named:
        assert e.field == key and f"field '{key}'" in str(e)


def test_large_deflate_bomb_is_refused_at_once_without_allocating(tmp_path):
    """A 300 MB bomb (1.3 MB on disk): refused from the zip directory alone."""
    path = write_bomb(tmp_path / "bomb.npz", "v_template", 300 * MB)
    assert path.stat().st_size < 3 * MB
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=r"bomb\.npz: field 'v_template' .*decompression bomb"):
            load_smplh(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB, peak   # refused from the zip directory: nothing was inflated


def test_many_small_members_adding_up_to_a_bomb(tmp_path):
    """Each member below the per-member threshold, together 100 MB from a few hundred kB."""
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for i in range(4):
            with zf.open(f"a{i}.npy", "w") as fp:
                fp.write(_npy_header((25 * MB // 8,)))
                fp.write(bytes(25 * MB))
    with pytest.raises(ModelFileError, match=r"many\.npz .*of the archive .*decompression bomb") as ei:
        load_npz(path)
    assert ei.value.field is None


def test_crc_damage_and_size_limit(tmp_path):
    path = tmp_path / "crc.npz"
    np.savez(path, a=np.arange(1000.0))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the stored data of 'a'
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match=r"crc\.npz: field 'a' cannot be read .*CRC"):
        load_npz(path)
    np.savez(path, a=np.arange(1000.0))
    with pytest.raises(ModelFileError, match=r"crc\.npz .*8000 bytes of arrays, more than the limit of 4000"):
        load_npz(path, max_bytes=4000)


def test_valid_files_read_as_np_load(tmp_path):
    arrays = {"f": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "s": np.array("lbs"),
              "names": np.array(["a", "bc"]), "i": np.arange(5, dtype=np.uint32), "e": np.zeros((0, 3))}
    for save in (np.savez, np.savez_compressed):
        save(tmp_path / "ok.npz", **arrays)
        got = load_npz(tmp_path / "ok.npz")
        with np.load(tmp_path / "ok.npz") as z:
            assert list(got) == z.files
            for k in z.files:
                assert got[k].dtype == z[k].dtype and np.array_equal(got[k], z[k])
    assert got["f"].flags.f_contiguous and got["f"].flags.writeable
    assert list(load_npz(tmp_path / "ok.npz", ["i"], optional=["s", "absent"])) == ["i", "s"]
    with pytest.raises(ModelFileError, match=r"ok\.npz: field 'absent' is missing"):
        load_npz(tmp_path / "ok.npz", ["absent"])
    assert npz_members(tmp_path / "ok.npz")["f"] == ((3, 4), np.dtype(np.float64))
    np.savez(tmp_path / "obj.npz", o=np.array([None], dtype=object))
    assert npz_members(tmp_path / "obj.npz")["o"][1] == np.dtype(object)  # listed, not read
    with pytest.raises(ModelFileError, match=r"nothere\.npz does not exist"):
        load_npz(tmp_path / "nothere.npz")


# ----------------------------------------------------------------- pickles
DEPTH = 200_000


def _deep_list_opcodes(depth: int) -> bytes:
    """``[[[...]]]`` ``depth`` deep as raw protocol-2 opcodes (EMPTY_LIST ... APPEND)."""
    return b"]" * depth + b"a" * (depth - 1)


def test_200k_deep_pickle_is_refused(tmp_path):
    path = tmp_path / "deep.pkl"
    path.write_bytes(b"\x80\x02" + _deep_list_opcodes(DEPTH) + b".")
    with pytest.raises(ModelFileError, match=r"deep\.pkl is nested more than"):
        load_smplh(path)
    # inside the dict of fields: the field is named
    path.write_bytes(b"\x80\x02}X\x0a\x00\x00\x00v_template" + _deep_list_opcodes(DEPTH) + b"s.")
    with pytest.raises(ModelFileError, match=r"deep\.pkl: field 'v_template' is nested more than"):
        load_smplh(path)


def test_cyclic_and_shared_pickles(tmp_path):
    cyc: list = []
    cyc.append(cyc)
    path = tmp_path / "cyclic.pkl"
    path.write_bytes(pickle.dumps({"v_template": cyc}, protocol=2))
    with pytest.raises(ModelFileError, match=r"cyclic\.pkl: field 'v_template' .*cyclic"):
        load_smplh(path)
    shared = [np.zeros(3)]
    for _ in range(60):  # 2**60 paths through 60 distinct lists
        shared = [shared, shared]
    path.write_bytes(pickle.dumps(shared, protocol=2))
    out = safe_load_pickle(path)   # each distinct list converted once (not 2**60 times)
    assert out[0] is out[1]


def _long1(n: int) -> bytes:
    return b"\x8a\x06" + n.to_bytes(6, "little", signed=True)


@pytest.mark.parametrize("name,data", [
    ("ndarray call", b"\x80\x02cnumpy\nndarray\n" + _long1(2 ** 40) + b"\x85\x85R."),
    ("reconstruct shape", b"\x80\x03cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
                          + _long1(2 ** 40) + b"\x85C\x01b\x87R."),
    ("truncated int", b"\x80\x02J\x00\x00"),
    ("bad opcode", b"\x80\x02\xff."),
])
def test_pickles_that_ask_for_memory_or_are_broken(tmp_path, name, data):
    path = tmp_path / "bad.pkl"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=r"bad\.pkl .*not a readable pickle"):
        safe_load_pickle(path)


def test_sparse_matrix_declaring_a_huge_dense_shape(tmp_path):
    m = scipy.sparse.coo_matrix(np.eye(3))
    m._shape = (10 ** 6, 10 ** 6)  # 8 TB dense
    path = tmp_path / "sparse.pkl"
    path.write_bytes(pickle.dumps({"J_regressor": m}, protocol=2))
    with pytest.raises(ModelFileError, match=r"sparse\.pkl: field 'J_regressor' is a malformed sparse matrix"):
        safe_load_pickle(path)
