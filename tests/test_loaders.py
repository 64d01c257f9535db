"""Official-model loaders: SMPL-H .npz/.pkl (safe unpickler) and Basel face models.

The files are written here in the official layouts with random contents (the
real models cannot be shipped); the pickles imitate the MANO-site files:
Python-2 byte strings, chumpy ``Ch`` objects, a scipy csc ``J_regressor``.
"""
from __future__ import annotations

import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from model_runtime.core.errors import ModelFileError
from model_runtime.models.loaders import load_bfm, load_smplh, safe_load_pickle
from model_runtime.models.loaders.smplh import SMPLH_KEYPOINT_VERTICES
from model_runtime.core.skeleton import BODY_KEYPOINTS_EXTENDED, NUM_JOINTS, PARENTS

P = 9 * (NUM_JOINTS - 1)


# ----------------------------------------------------------------- writers
def smplh_fields(V: int = 300, K: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    kintree = np.stack([PARENTS, np.arange(NUM_JOINTS)]).astype(np.uint32)  # root -> 2**32-1
    w = rng.random((V, NUM_JOINTS))
    jr = rng.random((NUM_JOINTS, V))
    return {
        "v_template": rng.normal(size=(V, 3)) * 0.3,
        "shapedirs": rng.normal(size=(V, 3, K)) * 0.01,
        "posedirs": (rng.normal(size=(V, 3, P)) * 0.001).astype(np.float32),
        "J_regressor": jr / jr.sum(1, keepdims=True),
        "weights": w / w.sum(1, keepdims=True),
        "kintree_table": kintree,
        "f": rng.integers(0, V, size=(2 * V, 3)).astype(np.uint32),
        "bs_style": np.array("lbs"),
    }


class _Py2Pickler(pickle._Pickler):
    """Writes byte strings and ASCII text as Python-2 ``str`` (BINSTRING), like the MANO-site files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def write_chumpy_pkl(path: Path, fields: dict, monkeypatch, protocol: int = 2) -> None:
    """Pickle ``fields`` with v_template/shapedirs/posedirs as ``chumpy.ch.Ch`` (fake module, writer only)."""
    ch_mod = types.ModuleType("chumpy.ch")

    class Ch:  # the attributes a real chumpy.Ch pickles
        pass

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch
    pkg = types.ModuleType("chumpy")
    pkg.ch = ch_mod
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "chumpy", pkg)
        m.setitem(sys.modules, "chumpy.ch", ch_mod)
        out = dict(fields)
        for k in ("v_template", "shapedirs", "posedirs"):
            c = Ch()
            c.__dict__.update({"x": np.asarray(fields[k]), "_dirty_vars": set(), "_itr": None})
            out[k] = c
        out["J_regressor"] = scipy.sparse.csc_matrix(fields["J_regressor"])
        with open(path, "wb") as fh:
            _Py2Pickler(fh, protocol=protocol, fix_imports=True).dump(out)
    assert "chumpy" not in sys.modules


# ----------------------------------------------------------------- SMPL-H
def test_npz_loads_and_posedirs_layout(tmp_path):
    f = smplh_fields()
    np.savez(tmp_path / "model.npz", **f)
    body = load_smplh(tmp_path / "model.npz")
    assert body.kind == "smplh" and body.shapedirs.shape == (300, 3, 16)
    assert body.posedirs.shape == (P, 300 * 3)
    np.testing.assert_allclose(body.v_template, f["v_template"], rtol=1e-6, atol=1e-6)
    # pose correctives: offset[v, c] = sum_p feat[p] * posedirs_file[v, c, p] (smplx convention)
    feat = np.random.default_rng(1).normal(size=(1, P)).astype(np.float32)
    ours = (feat @ body.posedirs).reshape(300, 3)
    ref = np.einsum("p,vcp->vc", feat[0], f["posedirs"])
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    # rest pose, zero shape: LBS gives the template back
    rot = np.broadcast_to(np.eye(3, dtype=np.float32), (1, NUM_JOINTS, 3, 3)).copy()
    verts, _, _ = body.forward(np.zeros((1, 16), np.float32), rot)
    np.testing.assert_allclose(verts[0], f["v_template"], atol=1e-5)


@pytest.mark.parametrize("protocol", [1, 2])
def test_python2_chumpy_pickle_loads_without_chumpy(tmp_path, monkeypatch, protocol):
    f = smplh_fields(K=10)  # MANO-site files have 10 shape components
    write_chumpy_pkl(tmp_path / "SMPLH_male.pkl", f, monkeypatch, protocol)
    body = load_smplh(tmp_path / "SMPLH_male.pkl")
    assert "chumpy" not in sys.modules
    np.testing.assert_allclose(body.v_template, f["v_template"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(body.J_regressor, f["J_regressor"], rtol=1e-6, atol=1e-7)  # densified
    assert body.shapedirs.shape == (300, 3, 16) and body.extras["num_betas_in_file"] == 10
    np.testing.assert_array_equal(body.shapedirs[..., 10:], 0.0)
    np.testing.assert_allclose(body.shapedirs[..., :10], f["shapedirs"], rtol=1e-5, atol=1e-7)


def test_keypoint_vertices_for_full_size_mesh(tmp_path):
    np.savez(tmp_path / "m.npz", **smplh_fields(V=6890, seed=2))
    kv = load_smplh(tmp_path / "m.npz").extras["keypoint_vertices"]
    assert set(BODY_KEYPOINTS_EXTENDED) <= set(kv)
    assert kv["nose"] == 332 and kv["left_thumb4"] == 2746 and kv["right_pinky4"] == 6133
    assert len(kv) == len(SMPLH_KEYPOINT_VERTICES) == 19


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(ModelFileError) as ei:
        load_smplh(path)
    assert str(path) in str(ei.value) and "system" in str(ei.value) and "not allowed" in str(ei.value)
    assert not marker.exists()
    # builtins such as eval are refused too
    path.write_bytes(b"\x80\x02cbuiltins\neval\nq\x00X\x04\x00\x00\x001+1\x85R.")
    with pytest.raises(ModelFileError, match="builtins.eval"):
        safe_load_pickle(path)


def test_truncated_files(tmp_path, monkeypatch):
    f = smplh_fields()
    write_chumpy_pkl(tmp_path / "a.pkl", f, monkeypatch)
    raw = (tmp_path / "a.pkl").read_bytes()
    (tmp_path / "a.pkl").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        load_smplh(tmp_path / "a.pkl")
    np.savez(tmp_path / "b.npz", **f)
    raw = (tmp_path / "b.npz").read_bytes()
    (tmp_path / "b.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="b.npz"):
        load_smplh(tmp_path / "b.npz")


@pytest.mark.parametrize("field", ["posedirs", "weights", "f", "kintree_table"])
def test_missing_field_is_named(tmp_path, field):
    f = smplh_fields()
    del f[field]
    np.savez(tmp_path / "m.npz", **f)
    with pytest.raises(ModelFileError, match=f"m.npz: field '{field}' is missing"):
        load_smplh(tmp_path / "m.npz")


@pytest.mark.parametrize("field,bad", [
    ("weights", np.ones((300, 24)) / 24),
    ("J_regressor", np.ones((24, 300))),
    ("shapedirs", np.zeros((299, 3, 16))),
    ("posedirs", np.zeros((300, 3, 207))),
    ("f", np.zeros((10, 4), np.int32)),
])
def test_misshaped_field_is_named(tmp_path, field, bad):
    f = smplh_fields()
    f[field] = bad
    np.savez(tmp_path / "m.npz", **f)
    with pytest.raises(ModelFileError, match=f"field '{field}' has shape"):
        load_smplh(tmp_path / "m.npz")


def test_wrong_kinematic_tree_and_face_ids(tmp_path):
    f = smplh_fields()
    f["kintree_table"] = f["kintree_table"].copy()
    f["kintree_table"][0, 15] = 9  # head attached to spine3
    np.savez(tmp_path / "m.npz", **f)
    with pytest.raises(ModelFileError, match=r"kintree_table.*\[15\]"):
        load_smplh(tmp_path / "m.npz")
    f = smplh_fields()
    f["f"][0, 0] = 300
    np.savez(tmp_path / "m.npz", **f)
    with pytest.raises(ModelFileError, match="field 'f'"):
        load_smplh(tmp_path / "m.npz")


# ----------------------------------------------------------------- BFM
def bfm_front(N: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = rng.uniform(-0.8, 0.8, size=(N, 3))  # decimetres: a 0.28 m wide box
    return {
        "meanshape": mean.reshape(1, -1),
        "idBase": rng.normal(size=(3 * N, 80)) * 0.01,
        "exBase": rng.normal(size=(3 * N, 64)).astype(np.float32) * 0.01,
        "meantex": rng.uniform(0, 255, size=(1, 3 * N)),
        "texBase": rng.normal(size=(3 * N, 80)),
        "tri": rng.integers(1, N + 1, size=(60, 3)).astype(np.float64),  # MATLAB: 1-based doubles
        "keypoints": rng.integers(1, N + 1, size=(1, 68)).astype(np.float64),
    }


def test_bfm_front_layout_units_and_indices(tmp_path):
    m = bfm_front()
    scipy.io.savemat(tmp_path / "BFM_model_front.mat", m)
    face = load_bfm(tmp_path / "BFM_model_front.mat")
    assert face.kind == "bfm" and face.num_vertices == 40
    assert face.sizes["identity"] == 80 and face.sizes["expression"] == 64 and face.sizes["albedo"] == 80
    assert face.exp_names[0] == "exp_000" and face.exp_names[-1] == "exp_063"
    np.testing.assert_allclose(face.mean_shape, m["meanshape"].reshape(40, 3) * 0.1, rtol=1e-6)
    np.testing.assert_allclose(face.id_basis[5, 2, 7], m["idBase"][5 * 3 + 2, 7] * 0.1, rtol=1e-6)
    np.testing.assert_allclose(face.mean_albedo, m["meantex"].reshape(40, 3) / 255, rtol=1e-6)
    np.testing.assert_array_equal(face.faces, m["tri"].astype(int) - 1)
    np.testing.assert_array_equal(face.landmarks68, m["keypoints"][0].astype(int) - 1)


@pytest.mark.parametrize("field", ["exBase", "tri", "keypoints", "meantex"])
def test_bfm_missing_field(tmp_path, field):
    m = bfm_front()
    del m[field]
    scipy.io.savemat(tmp_path / "f.mat", m)
    with pytest.raises(ModelFileError, match=f"f.mat: field '{field}' is missing"):
        load_bfm(tmp_path / "f.mat")


def test_bfm_misshaped_truncated_and_wrong_units(tmp_path):
    m = bfm_front()
    m["idBase"] = m["idBase"][:-3]
    scipy.io.savemat(tmp_path / "f.mat", m)
    with pytest.raises(ModelFileError, match="field 'idBase' has shape"):
        load_bfm(tmp_path / "f.mat")
    m = bfm_front()
    m["tri"] = m["tri"] - 1  # 0-based ids contain 0
    m["tri"][0, 0] = 0
    scipy.io.savemat(tmp_path / "f.mat", m)
    with pytest.raises(ModelFileError, match="field 'tri'.*1-based"):
        load_bfm(tmp_path / "f.mat")
    m = bfm_front()
    m["meanshape"] = m["meanshape"] * 100  # millimetres in a decimetre layout
    scipy.io.savemat(tmp_path / "f.mat", m)
    with pytest.raises(ModelFileError, match="field 'meanshape'.*units"):
        load_bfm(tmp_path / "f.mat")
    scipy.io.savemat(tmp_path / "f.mat", bfm_front())
    raw = (tmp_path / "f.mat").read_bytes()
    (tmp_path / "f.mat").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ModelFileError, match="f.mat.*truncated"):
        load_bfm(tmp_path / "f.mat")


def _write_exp_pca_bin(path: Path, mean: np.ndarray, pc: np.ndarray) -> None:
    """3DDFA layout: int32 d, float32 mean (3n), float32 basis (d rows of 3n)."""
    d = pc.shape[1]
    path.write_bytes(np.int32(d).tobytes() + mean.astype(np.float32).tobytes() + pc.T.astype(np.float32).tobytes())


def test_basel2009_with_exp_pca_bin_and_trim_index(tmp_path):
    rng = np.random.default_rng(3)
    N, n, d = 50, 45, 79
    mu = rng.uniform(-8e4, 8e4, size=(3 * N, 1))  # micrometres
    tri = np.array([[1, 2, 3], [2, 3, 4], [46, 47, 48], [1, 2, 50]], np.float64)
    scipy.io.savemat(tmp_path / "01_MorphableModel.mat", {
        "shapeMU": mu, "shapePC": rng.normal(size=(3 * N, 199)), "shapeEV": rng.uniform(1, 2, (199, 1)),
        "texMU": rng.uniform(0, 255, (3 * N, 1)), "texPC": rng.normal(size=(3 * N, 199)),
        "texEV": rng.uniform(1, 2, (199, 1)), "tl": tri})
    keep = np.arange(n)  # expression basis covers the first 45 vertices
    scipy.io.savemat(tmp_path / "BFM_exp_idx.mat", {"trimIndex": (keep + 1).reshape(-1, 1).astype(float)})
    pc = rng.normal(size=(3 * n, d))
    std = rng.uniform(1, 3, d)
    np.savetxt(tmp_path / "std_exp.txt", std)
    _write_exp_pca_bin(tmp_path / "Exp_Pca.bin", np.zeros(3 * n), pc)

    with pytest.raises(ModelFileError, match="expression basis"):
        load_bfm(tmp_path / "01_MorphableModel.mat")
    face = load_bfm(tmp_path / "01_MorphableModel.mat", expression_basis=tmp_path / "Exp_Pca.bin")
    assert face.num_vertices == n and face.sizes == {"identity": 80, "expression": 64, "albedo": 80, "sh": 27}
    np.testing.assert_allclose(face.mean_shape, mu.reshape(N, 3)[:n] * 1e-6, rtol=1e-5)
    np.testing.assert_allclose(face.exp_basis[3, 1, 5], pc[3 * 3 + 1, 5] * std[5] * 1e-6, rtol=1e-4)
    np.testing.assert_array_equal(face.faces, [[0, 1, 2], [1, 2, 3]])  # triangles leaving the crop dropped
    assert (face.landmarks68 == -1).all()

    (tmp_path / "Exp_Pca.bin").write_bytes((tmp_path / "Exp_Pca.bin").read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="Exp_Pca.bin.*truncated"):
        load_bfm(tmp_path / "01_MorphableModel.mat", expression_basis=tmp_path / "Exp_Pca.bin")
