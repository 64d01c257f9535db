"""BodyIKNet / HandIKNet: keypoint layer, Eq. 15 loss, deterministic resumable training, shipped weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model_runtime.models.load import load_body_model
from model_runtime.core.errors import InputUnreadableError
from model_runtime.models.keypoints import PartKinematics, body_keypoints, hand_keypoints, keypoint_vertex_ids
from model_runtime.core.rotations import axis_angle_to_matrix, geodesic_angle, rot6d_to_matrix

HELD_OUT_CLIP = "hdm05/train/1/HDM_dg_depositFloorR_013_120.amc"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return load_body_model()


@pytest.fixture(scope="module")
def kin_body(model):
    return PartKinematics(model, "body")


@pytest.fixture(scope="module")
def kin_hand(model):
    return PartKinematics(model, "hand")


@pytest.fixture(scope="module")
def real_poses(mocap_dir, kin_body, tmp_path_factory):
    """Body rotations ``(F, 22, 3, 3)``, betas, scale of a held-out HDM05 clip (actor dg), retargeted here."""
    import os

    from model_runtime.mocap.asf_amc import load_amc_clip
    from model_runtime.mocap.retarget import SolverSettings, retarget_clips

    path = mocap_dir / HELD_OUT_CLIP
    if not path.is_file():
        path = next((mocap_dir / "hdm05").rglob("HDM_dg_*.amc"))
    old = os.environ.get("FULLBODY_CACHE")
    os.environ["FULLBODY_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        r = retarget_clips([load_amc_clip(path).subsample(12)], kin_body, SolverSettings(iters=100))[0]
    finally:
        if old is None:
            os.environ.pop("FULLBODY_CACHE")
        else:
            os.environ["FULLBODY_CACHE"] = old
    return rot6d_to_matrix(torch.as_tensor(r.rot6d)), torch.as_tensor(r.betas), float(r.scale)


def test_part_kinematics_matches_full_forward(model, kin_body, kin_hand):
    g = torch.Generator().manual_seed(1)
    R = axis_angle_to_matrix(0.4 * torch.randn(3, 52, 3, generator=g))
    betas = torch.randn(3, 16, generator=g)
    verts, joints, T = model.forward(betas, R)
    ids = keypoint_vertex_ids(model)
    _, kp = kin_body(R[:, :22], betas)
    assert torch.allclose(kp, body_keypoints(joints, verts, ids) - joints[:, :1], atol=2e-5)
    # hand part: root rotation = the right wrist's global rotation
    Rh = torch.cat([T[:, 21:22, :3, :3], R[:, 37:]], 1)
    _, kh = kin_hand(Rh, betas)
    full = hand_keypoints(joints, verts, ids, "right")
    assert torch.allclose(kh, full - full[:, :1], atol=2e-5)


def _body_sampler(real_poses, kin_body):
    from model_runtime.ik.data import BodySampler

    return BodySampler(real_poses[0], kin_body)


def test_loss_is_differentiable_through_fk(real_poses, kin_body):
    from model_runtime.ik.networks import BodyIKNet
    from model_runtime.ik.train import LossWeights, iknet_loss

    torch.manual_seed(0)
    net = BodyIKNet()
    batch = _body_sampler(real_poses, kin_body).sample(16, torch.Generator().manual_seed(0))
    out = net(batch.kp, batch.conf)
    out["rot6d"].retain_grad()
    only_chi = LossWeights(alpha=0, beta=0, theta=0, chi=1, chi_bar=0)
    loss, terms = iknet_loss("body", out, batch, kin_body, only_chi)
    assert set(terms) == {"theta", "chi", "chi_bar", "beta", "alpha"}
    loss.backward()
    # the keypoint term alone reaches the 6D output through Gram-Schmidt + forward kinematics
    assert torch.isfinite(out["rot6d"].grad).all() and out["rot6d"].grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def _trainer(real_poses, kin_body, part="body", steps=12):
    from model_runtime.ik.train import Trainer, load_net

    first_stage = load_net("body")[0] if part == "correction" else None
    return Trainer(part, _body_sampler(real_poses, kin_body), kin_body, steps, seed=3, batch=16, first_stage=first_stage)


@pytest.mark.parametrize("part", ["body", "correction"])
def test_training_is_deterministic_and_resumable(real_poses, kin_body, tmp_path, part):
    """BodyIKNet, and the correction stage on top of the frozen shipped BodyIKNet."""
    straight = _trainer(real_poses, kin_body, part)
    straight.train()
    again = _trainer(real_poses, kin_body, part)
    again.train()
    first = _trainer(real_poses, kin_body, part)
    first.train(until=6, checkpoint=tmp_path / "ck.pt", every=6)
    resumed = _trainer(real_poses, kin_body, part)
    resumed.load(tmp_path / "ck.pt")
    assert resumed.step == 6
    resumed.train()
    sd = straight.net.state_dict()
    for other in (again, resumed):
        for k, v in other.net.state_dict().items():
            assert torch.equal(v, sd[k]), k
    assert straight.history[-1]["loss"] < 50  # it trains (finite, not diverging)
    if part == "correction":  # only the correction stage is trained; the first stage stays as shipped
        assert all(not p.requires_grad for p in straight.first_stage.parameters())
        assert not any(k.startswith("first") for k in sd)


def test_correction_stage_must_match_its_first_stage(tmp_path):
    """correction.pt was trained on one BodyIKNet; loading it next to other body weights is a named error."""
    import json
    import shutil

    from model_runtime.core.errors import ModelFileError
    from model_runtime.ik.inference import IKSolver
    from model_runtime.ik.train import WEIGHTS_DIR

    for f in WEIGHTS_DIR.glob("*.*"):
        shutil.copy(f, tmp_path / f.name)
    info = json.loads((tmp_path / "correction.json").read_text())
    info["first_stage_sha256"] = "0" * 16
    (tmp_path / "correction.json").write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match="correction.json.*first_stage_sha256"):
        IKSolver(weights_dir=tmp_path)
    assert IKSolver(weights_dir=tmp_path, correct=False).correction_net is None


def test_hand_sampler_deterministic_and_in_limits(kin_hand):
    from model_runtime.ik.data import HandSampler
    from model_runtime.ik.hand_prior import LIMITS_DEG

    real = axis_angle_to_matrix(torch.zeros(4, 15, 3))
    s = HandSampler(real, kin_hand, p_real=0.0)
    a = s.sample(64, torch.Generator().manual_seed(5))
    b = s.sample(64, torch.Generator().manual_seed(5))
    assert torch.equal(a.kp, b.kp) and torch.equal(a.rot, b.rot)
    widest = max(max(abs(v) for r in lim for v in r) for kind in LIMITS_DEG.values() for lim in kind.values())
    ang = torch.rad2deg(geodesic_angle(a.rot[:, 1:], torch.eye(3).expand(64, 15, 3, 3)))
    assert ang.max() <= widest * 1.8  # combined flexion/abduction/twist stays anatomical


@pytest.fixture(scope="module")
def solver():
    from model_runtime.ik.inference import IKSolver

    return IKSolver("cpu")


def test_iksolver_on_real_retargeted_frames(solver, real_poses, kin_body):
    R, betas, scale = real_poses
    F = len(R)
    _, kp = kin_body(R, betas.expand(F, -1), torch.full((F,), scale))
    out = solver.solve_body(kp.numpy(), np.ones((F, 24), np.float32))
    assert out["rot6d"].shape == (F, 22, 6) and out["betas"].shape == (F, 16) and out["scale"].shape == (F,)
    Rp = rot6d_to_matrix(torch.as_tensor(out["rot6d"]))
    _, kp_pred = kin_body(Rp, torch.as_tensor(out["betas"]), torch.as_tensor(out["scale"]))
    mpjpe_mm = 1000 * (kp_pred - kp).norm(dim=-1).mean()
    assert mpjpe_mm < 20.0, mpjpe_mm


def test_limb_refinement_fixes_limbs_and_keeps_truth(real_poses, kin_body):
    from model_runtime.ik.refine import refine_limbs

    R, betas, scale = real_poses
    F = len(R)
    b, s = betas.expand(F, -1), torch.full((F,), scale)
    _, kp = kin_body(R, b, s)
    conf = torch.ones(F, 24)
    # the truth is a fixed point
    assert torch.allclose(refine_limbs(kin_body, R, b, s, kp, conf), R, atol=1e-4)
    # bent limbs are pulled back onto the observed keypoints (bone lengths are exact here)
    g = torch.Generator().manual_seed(4)
    Rn = R.clone()
    limbs = [1, 2, 4, 5, 7, 8, 13, 14, 16, 17, 18, 19]
    Rn[:, limbs] = axis_angle_to_matrix(0.3 * torch.randn(F, len(limbs), 3, generator=g)) @ R[:, limbs]
    Rr = refine_limbs(kin_body, Rn, b, s, kp, conf)
    err = lambda Rx: 1000 * (kin_body(Rx, b, s)[1] - kp).norm(dim=-1).mean()  # noqa: E731
    assert err(Rr) < 0.25 * err(Rn)


def test_missing_legs_still_give_a_sane_pose(solver, real_poses, kin_body):
    from model_runtime.ik.data import BODY_DROP_GROUPS

    R, betas, scale = real_poses
    F = len(R)
    _, kp = kin_body(R, betas.expand(F, -1), torch.full((F,), scale))
    conf = torch.ones(F, 24)
    legs = BODY_DROP_GROUPS[0]
    conf[:, legs] = 0
    kp = kp.clone()
    kp[:, legs] = 0.0  # what a detector leaves there does not matter
    out = solver.solve_body(kp, conf)
    Rp = rot6d_to_matrix(out["rot6d"])
    assert torch.isfinite(Rp).all()
    assert torch.allclose(Rp.transpose(-1, -2) @ Rp, torch.eye(3).expand_as(Rp), atol=1e-4)
    _, kp_pred = kin_body(Rp, out["betas"], out["scale"])
    upper = [i for i in range(24) if i not in legs]
    assert 1000 * (kp_pred[:, upper] - kp[:, upper]).norm(dim=-1).mean() < 45.0
    # legs: human, not folded through themselves (knee bend < 160 deg, hip < 150 deg)
    ang = torch.rad2deg(geodesic_angle(Rp, torch.eye(3).expand_as(Rp)))
    assert ang[:, [4, 5]].max() < 160 and ang[:, [1, 2]].max() < 150
    assert 0.7 < float(out["scale"].min()) and float(out["scale"].max()) < 1.4


def test_hands_mirror_and_missing(solver, kin_hand):
    from model_runtime.ik.hand_prior import anatomical_axes, random_rotations, sample_limited_poses
    from model_runtime.ik.inputs import mirror_points, mirror_rotations

    g = torch.Generator().manual_seed(2)
    R = torch.cat([random_rotations(6, g)[:, None], sample_limited_poses(6, anatomical_axes(kin_hand), g)], 1)
    _, kp = kin_hand(R, torch.zeros(6, 16))
    kp = kp * 1.2 + torch.tensor([0.1, -0.2, 0.5])  # detector scale and offset do not matter
    both = torch.stack([mirror_points(kp), kp], 1)  # left = mirror image of the right hand
    conf = torch.ones(6, 2, 21)
    out = solver.solve_hands_full(both, conf)
    assert out["rot6d"].shape == (6, 2, 15, 6)
    Rl, Rr = rot6d_to_matrix(out["rot6d"][:, 0]), rot6d_to_matrix(out["rot6d"][:, 1])
    assert torch.allclose(Rl, mirror_rotations(Rr), atol=1e-5)
    # accuracy of the right hand (fingers posed by the predicted rotations, wrist from the net)
    Rp = torch.cat([out["wrist_global"][:, 1:2], Rr], 1)
    _, kp_pred = kin_hand(Rp, torch.zeros(6, 16))
    ref = (kp - kp[:, :1]) / 1.2
    assert 1000 * (kp_pred - ref).norm(dim=-1).mean() < 20.0
    # a failed hand detection (all conf 0) gives a finite rest-like pose
    conf[:, 0] = 0
    miss = solver.solve_hands(both, conf)
    assert torch.isfinite(miss).all()


def test_hand_ik_on_real_hand_poses(solver, kin_hand, realdata):
    """Real 3D hands (hand-graph-cnn GT, fitted with the SMPL-H hand) -> HandIKNet -> FK."""
    from model_runtime.ik.hand_prior import fit_hand_poses, load_hgc_hands

    kp = load_hgc_hands(realdata.parent)[::25]
    rot6d, err = fit_hand_poses(kp, kin_hand, iters=200)
    R = rot6d_to_matrix(torch.as_tensor(rot6d))
    _, kp_model = kin_hand(R, torch.zeros(len(R), 16))
    right = solver.solve_hands_full(torch.stack([mirror(kp_model), kp_model], 1), torch.ones(len(R), 2, 21))
    Rp = torch.cat([right["wrist_global"][:, 1:2], rot6d_to_matrix(right["rot6d"][:, 1])], 1)
    _, kp_pred = kin_hand(Rp, torch.zeros(len(R), 16))
    assert 1000 * (kp_pred - kp_model).norm(dim=-1).mean() < 15.0


def mirror(x):
    from model_runtime.ik.inputs import mirror_points

    return mirror_points(x)


def test_numpy_path_equals_torch_path(solver, real_poses, kin_body, kin_hand):
    """The small-batch numpy path (IKSolver's CPU default for <= 16 numpy frames) computes what the
    torch modules compute: noisy held-out body keypoints with dropped pelvis/hips/neck/legs, and
    hands with a mirrored left, a missing hand and missing MCPs."""
    from model_runtime.ik.hand_prior import anatomical_axes, random_rotations, sample_limited_poses
    from model_runtime.ik.inference import IKSolver
    from model_runtime.ik.inputs import HAND_MCP

    torch_only = IKSolver("cpu", numpy_max_batch=0)
    R, betas, scale = real_poses
    n = 8
    g = torch.Generator().manual_seed(5)
    _, kp = kin_body(R[:n], betas.expand(n, -1), torch.full((n,), scale))
    kp = (kp + 0.01 * torch.randn(kp.shape, generator=g)).numpy()
    conf = torch.rand(n, 24, generator=g).numpy() * 0.5 + 0.5
    conf[1, [4, 5, 6, 7]] = 0            # legs
    conf[2, 0] = 0                       # pelvis: mid-hips stand in
    conf[3, [1, 2]] = 0                  # hips: shoulders give the frame
    conf[4, 12] = 0                      # neck
    assert solver._numpy_path(kp) and not solver._numpy_path(torch.as_tensor(kp))
    fast, ref = solver.solve_body(kp, conf), torch_only.solve_body(kp, conf)
    for k in ("rot6d", "betas", "scale"):
        assert fast[k].dtype == np.float32 and fast[k].shape == ref[k].shape
        np.testing.assert_allclose(fast[k], ref[k], atol=2e-4, err_msg=k)

    Rh = torch.cat([random_rotations(2 * n, g)[:, None], sample_limited_poses(2 * n, anatomical_axes(kin_hand), g)], 1)
    _, hk = kin_hand(Rh, torch.zeros(2 * n, 16))
    hands = hk.numpy().reshape(n, 2, 21, 3).copy()
    hands[:, 0, :, 0] *= -1              # left hands: mirror images of right ones
    hconf = np.ones((n, 2, 21), np.float32)
    hconf[1, 0] = 0                      # left hand not detected
    hconf[2, 1, HAND_MCP] = 0            # right MCPs missing: no hand size
    fast, ref = solver.solve_hands_full(hands, hconf), torch_only.solve_hands_full(hands, hconf)
    for k in ("rot6d", "wrist_global"):
        assert fast[k].shape == ref[k].shape
        np.testing.assert_allclose(fast[k], ref[k], atol=2e-4, err_msg=k)


def test_numpy_path_on_real_detections_batch_1_and_4(solver):
    """The batch-1 path the live capture runs (and the offline capture's batches of 4) on real
    MediaPipe Holistic 3D keypoints (tests/data/demo_clip_detections.npz, recorded from
    samples/demo_clip.mp4; frames with a missing hand included) gives the torch modules' outputs
    to float32 rounding: the fast path changes the speed, not the result."""
    from pathlib import Path

    from model_runtime.ik.inference import IKSolver

    d = np.load(Path(__file__).parent / "data" / "demo_clip_detections.npz")
    ok = d["person"]
    kp, conf = d["body_3d"][ok].astype(np.float32), d["body_2d"][ok, :, 2].astype(np.float32)
    hk = np.nan_to_num(d["hands_3d"][ok]).astype(np.float32)
    hc = np.repeat(np.nan_to_num(d["hands_conf"][ok])[..., None], 21, -1).astype(np.float32)
    assert (hc[:, :, 0] == 0).any() and (hc[:, :, 0] > 0).any()       # both cases: a hand seen, a hand missing
    conf[::7, 0] = 0                                                   # some frames without a pelvis (fallback frame)
    torch_only = IKSolver("cpu", numpy_max_batch=0)
    ref_b, ref_h = torch_only.solve_body(kp, conf), torch_only.solve_hands_full(hk, hc)
    for B in (1, 4):
        worst = {}
        for i in range(0, len(kp) - B + 1, B):
            s = slice(i, i + B)
            assert solver._numpy_path(kp[s])
            body, hands = solver.solve_body(kp[s], conf[s]), solver.solve_hands_full(hk[s], hc[s])
            got = {**body, "hand_rot6d": hands["rot6d"], "wrist_global": hands["wrist_global"]}
            ref = {"rot6d": ref_b["rot6d"][s], "betas": ref_b["betas"][s], "scale": ref_b["scale"][s],
                   "hand_rot6d": ref_h["rot6d"][s], "wrist_global": ref_h["wrist_global"][s]}
            for k, v in ref.items():
                assert got[k].dtype == np.float32 and got[k].shape == v.shape, k
                worst[k] = max(worst.get(k, 0.0), float(np.abs(got[k] - v).max()))
        assert max(worst.values()) < 2e-5, (B, worst)


def test_bad_input_is_named(solver):
    with pytest.raises(InputUnreadableError, match="'kp3d' has shape"):
        solver.solve_body(np.zeros((2, 23, 3)), np.ones((2, 23)))
    with pytest.raises(InputUnreadableError, match="'conf' has shape"):
        solver.solve_hands(np.zeros((1, 2, 21, 3)), np.ones((1, 21)))
    bad = np.zeros((1, 24, 3))
    bad[0, 3, 0] = np.nan
    with pytest.raises(InputUnreadableError, match="NaN"):
        solver.solve_body(bad, np.ones((1, 24)))


def test_eval_mocap_ik_command(mocap_dir, tmp_path, monkeypatch, capsys):
    """`eval mocap-ik` on an unseen clip (held-out actor dg) prints the documented JSON."""
    import json

    from model_runtime.cli.main import main

    monkeypatch.setenv("FULLBODY_CACHE", str(tmp_path))
    clip = next((mocap_dir / "hdm05").rglob("HDM_dg_*.amc"))
    rc = main(["eval", "mocap-ik", str(clip), "--json", "--max-frames", "40", "--baseline-iters", "30",
               "--threads", "1"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["frames"] == 40 and rep["files"] == 1
    for key in ("mpjpe_mm", "pa_mpjpe_mm", "rotation_error_deg", "mpjpe_mm_legs_missing"):
        assert 0 <= rep[key] < 60, (key, rep[key])
        assert key in rep["baseline_optimisation"] or key == "mpjpe_mm_legs_missing"
        assert key in rep["iknet_without_refinement"] or key == "mpjpe_mm_legs_missing"
        assert key in rep["bodyiknet_only"] or key == "mpjpe_mm_legs_missing"
    assert set(rep["ms_per_frame"]) == {"batch1", "batch1_cpu", "batch1_cpu_p10", "batch256"} and rep["ms_per_frame"]["batch1"] > 0
    assert rep["ms_per_frame"]["batch1_cpu"] > 0          # CPU time per frame (the wall time depends on the load)
    assert 0 < rep["ms_per_frame"]["batch1_cpu_p10"] <= rep["ms_per_frame"]["batch1_cpu"]   # same 300 calls
    assert rep["pa_mpjpe_mm"] <= rep["mpjpe_mm"] + 1e-6
    # a missing file is a clear error with its own exit code
    assert main(["eval", "mocap-ik", str(tmp_path / "nope.bvh"), "--json"]) == 3
