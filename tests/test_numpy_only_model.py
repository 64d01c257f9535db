"""The numpy-only replacements of scipy in the model layer, checked against scipy itself,
and the avatar file written by ``model export --format npz``.

* :func:`bridge.connected_components` (vectorised union-find) gives scipy's
  labels on random graphs, including isolated nodes and self-loops;
* pickled scipy CSC/CSR/COO matrices (as in MANO-site ``.pkl`` files) become the
  same dense arrays as ``toarray()``, and malformed ones name the file and field;
* the avatar file round-trips, equals :func:`avatar_file.avatar_arrays`, and a
  damaged one is refused with the file and field named.
"""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components as scipy_components

from model_runtime.models.avatar_file import avatar_arrays, read_avatar_file, write_avatar_file
from model_runtime.models.body_model import load_builtin_body
from model_runtime.models.bridge import connected_components
from model_runtime.cli.main import main
from model_runtime.core.errors import ModelFileError
from model_runtime.models.face_model import load_builtin_face
from model_runtime.models.full_model import build_full_model
from model_runtime.models.loaders import safe_load_pickle

from test_bridge import cap_face, sphere_body


@pytest.mark.parametrize("seed", range(4))
def test_connected_components_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    m = int(rng.integers(0, 2 * n))
    a, b = rng.integers(0, n, size=(2, m))
    a[: m // 10] = b[: m // 10]                                      # some self-loops
    count, labels = connected_components(n, a, b)
    adj = sp.coo_matrix((np.ones(m), (a, b)), shape=(n, n))
    ref_count, ref_labels = scipy_components(adj, directed=False)
    assert count == ref_count
    np.testing.assert_array_equal(labels, ref_labels)


def test_connected_components_long_path_and_no_edges():
    n = 5000
    perm = np.random.default_rng(0).permutation(n)                  # one long chain in random order
    count, labels = connected_components(n, perm[:-1], perm[1:])
    assert count == 1 and (labels == 0).all()
    count, labels = connected_components(4, np.zeros(0, int), np.zeros(0, int))
    assert count == 4 and labels.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", ["csc", "csr", "coo"])
def test_pickled_sparse_matrices_densify_without_scipy(tmp_path, kind):
    rng = np.random.default_rng(1)
    dense = rng.random((52, 300)) * (rng.random((52, 300)) < 0.05)
    mat = {"csc": sp.csc_matrix, "csr": sp.csr_matrix, "coo": sp.coo_matrix}[kind](dense)
    (tmp_path / "m.pkl").write_bytes(pickle.dumps({"J_regressor": mat}, protocol=2))
    out = safe_load_pickle(tmp_path / "m.pkl")["J_regressor"]
    assert isinstance(out, np.ndarray) and out.dtype == dense.dtype
    np.testing.assert_array_equal(out, mat.toarray())


def test_malformed_pickled_sparse_matrix_names_file_and_field(tmp_path):
    mat = sp.csc_matrix(np.eye(4))
    mat.indices = mat.indices + 10                                   # row ids outside the 4 x 4 shape
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({"J_regressor": mat}, protocol=2))
    with pytest.raises(ModelFileError, match=r"bad\.pkl: field 'J_regressor' is a malformed sparse matrix"):
        safe_load_pickle(tmp_path / "bad.pkl")


@pytest.fixture(scope="module")
def full():
    return build_full_model(sphere_body(), cap_face())


def test_avatar_file_round_trip_and_cli(full, tmp_path, capsys):
    rng = np.random.default_rng(2)
    person = {"betas": rng.normal(size=16).astype(np.float32), "identity": rng.normal(size=4).astype(np.float32),
              "albedo": np.zeros(2, np.float32)}
    arrays = avatar_arrays(full, **person)
    assert arrays["vertices"].shape == (full.num_vertices, 3)
    assert arrays["expression_deltas"].shape == (3, full.num_vertices, 3)
    np.testing.assert_allclose(arrays["skin_weights"].sum(1), 1.0, atol=1e-5)
    # an expression moves the face and the body seam rings that follow its rim (bridge.seam_spread),
    # nothing else; the basis is the forward pass of the person
    moved = np.abs(arrays["expression_deltas"]).max(axis=(0, 2)) > 0
    away = np.setdiff1d(np.arange(full.num_body_vertices), full.follow_ids)
    assert moved[full.face_vertex_slice].all() and not moved[away].any()
    back = read_avatar_file(write_avatar_file(tmp_path / "a.npz", arrays))
    assert back.keys() == arrays.keys()
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k], err_msg=k)
    # the CLI (built-in body and face, the person from a .json file) writes what avatar_arrays gives here
    (tmp_path / "person.json").write_text(json.dumps({k: v.tolist() for k, v in person.items()}))
    code = main(["model", "export", "--format", "npz", "--out", str(tmp_path / "cli.npz"),
                 "--person", str(tmp_path / "person.json")])
    assert code == 0, capsys.readouterr().err
    cli = read_avatar_file(tmp_path / "cli.npz")
    ref = avatar_arrays(build_full_model(load_builtin_body(), load_builtin_face()), **person)
    assert cli.keys() == ref.keys()
    for k in ref:
        if np.issubdtype(ref[k].dtype, np.number):
            np.testing.assert_allclose(cli[k], ref[k], atol=1e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(cli[k], ref[k], err_msg=k)


@pytest.mark.parametrize("damage, field", [
    (lambda a: a.pop("skin_weights"), "skin_weights"),
    (lambda a: a.update(expression_deltas=a["expression_deltas"][:, :10]), "expression_deltas"),
    (lambda a: a.update(faces=a["faces"] + 10 ** 6), "faces"),
    (lambda a: a.update(version=np.array(99)), "version"),
    (lambda a: a.update(colors=np.full_like(a["colors"], np.nan)), "colors"),
])
def test_damaged_avatar_file_names_file_and_field(full, tmp_path, damage, field):
    arrays = avatar_arrays(full)
    damage(arrays)
    path = write_avatar_file(tmp_path / "broken.npz", arrays)
    with pytest.raises(ModelFileError, match=rf"broken\.npz: field '{field}'"):
        read_avatar_file(path)
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError, match=r"cut\.npz .*not a readable avatar"):
        read_avatar_file(tmp_path / "cut.npz")


def test_cli_avatar_carries_the_captured_colour_detail(tmp_path, capsys):
    """``model export --person`` (how the add-on builds an avatar through the runtime, e.g. with a BFM
    face) passes the captured ``albedo_detail`` on to the avatar's colours; a detail of another size is
    refused in one line naming it."""
    full = build_full_model(load_builtin_body(), load_builtin_face())
    detail = np.zeros((full.face.num_vertices, 3), np.float32)
    detail[::5, 0] = -0.3
    person = {"betas": np.zeros(16, np.float32), "albedo_detail": detail}
    (tmp_path / "p.json").write_text(json.dumps({k: v.reshape(-1).tolist() for k, v in person.items()}))
    assert main(["model", "export", "--format", "npz", "--out", str(tmp_path / "a.npz"),
                 "--person", str(tmp_path / "p.json")]) == 0, capsys.readouterr().err
    got = read_avatar_file(tmp_path / "a.npz")["colors"]
    np.testing.assert_allclose(got, avatar_arrays(full, albedo_detail=detail)["colors"], atol=1e-6)
    assert np.abs(got - avatar_arrays(full)["colors"]).max() > 0.1
    (tmp_path / "bad.json").write_text(json.dumps({"albedo_detail": [0.1] * 30}))
    code = main(["model", "export", "--format", "npz", "--out", str(tmp_path / "b.npz"), "--person", str(tmp_path / "bad.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5 and "albedo_detail" in err[-1] and "bad.json" in err[-1]
