"""FaceNet's synthetic training crops (face/facenet_synth.py): exact labels at any head pose, stored as the
real cache stores a face frame, and mixed into training batches at ``synth_share``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model_runtime.models.load import load_face_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_corr():
    from model_runtime.face.correspondence import correspondence_for

    m = load_face_model()
    return m, correspondence_for(m)


@pytest.fixture(scope="module")
def synth_rows(model_corr):
    """Six renders (plain-noise backgrounds: no research data needed) as cache arrays."""
    from model_runtime.face.facenet_synth import render_sample, sample_parameters, smooth_noise

    m, corr = model_corr
    rng = np.random.default_rng(7)
    rows = []
    while len(rows) < 6:
        row = render_sample(m, corr, sample_parameters(m, rng), smooth_noise(rng, 320), rng)
        if row is not None:
            rows.append(row)
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def test_synthetic_labels_are_exact_through_the_training_crop(synth_rows, model_corr):
    """The exact pose and coefficients, put through a jittered training crop, land on the stored landmarks
    (to float rounding, not the fit's few-% residual of real frames)."""
    from model_runtime.face.train_facenet import ModelTensors, TrainConfig, augment, project_batch

    m, corr = model_corr
    mt = ModelTensors(m, corr, "cpu")
    b = augment(synth_rows, np.arange(6), TrainConfig(roll_deg=30.0), torch.Generator().manual_seed(1), "cpu")
    pts = project_batch(mt.landmarks(b["identity"], b["expression"]) @ b["R"].transpose(1, 2) + b["t"][:, None], b["K"])
    err = (pts - b["landmarks"]).norm(dim=-1).mean(1) / b["face_size"]
    assert float(err.max()) < 2e-3, err


def test_synthetic_crops_show_the_face_where_the_landmarks_are(synth_rows):
    """The crop is the render: the face's landmark box holds the skin mask, and the face differs from the
    background around it; the teacher is exact (error 0) and frames are marked synthetic (-1)."""
    from model_runtime.face.facenet_data import STORE_SIZE

    assert synth_rows["crop"].shape == (6, STORE_SIZE, STORE_SIZE, 3) and synth_rows["crop"].dtype == np.uint8
    for crop, lm, mask in zip(synth_rows["crop"], synth_rows["landmarks"], synth_rows["mask"]):
        lo, hi = lm.min(0), lm.max(0)
        assert (lo > 0).all() and (hi < STORE_SIZE).all()
        assert 0.25 * STORE_SIZE < float(np.sqrt(np.prod(hi - lo))) < 0.75 * STORE_SIZE    # 2x the box around it
        assert mask.sum() > 300
    assert np.all(synth_rows["teacher_error_px"] == 0) and np.all(synth_rows["frame"] == -1)


def test_poses_cover_profiles(model_corr):
    """Half the samples are turned beyond 40 degrees, up to 90: what the six frontal training people lack."""
    from model_runtime.face.facenet_synth import MAX_YAW_DEG, sample_parameters

    m, _ = model_corr
    rng = np.random.default_rng(0)
    yaw = np.array([float(sample_parameters(m, rng)["yaw_deg"]) for _ in range(400)])
    assert 0.4 < np.mean(np.abs(yaw) > 40) < 0.6
    assert np.abs(yaw).max() <= MAX_YAW_DEG and np.mean(np.abs(yaw) > 70) > 0.1
    assert np.mean(yaw > 0) > 0.4 and np.mean(yaw < 0) > 0.4


def test_cache_with_a_synthetic_source_loads_and_batches_mix_it(tmp_path, synth_rows):
    """``load_cache`` takes the synthetic file beside real ones (its extra ``yaw_deg`` is dropped) and
    ``split_synthetic`` tells its rows apart by name, so a batch can hold ``synth_share`` of them."""
    from model_runtime.face.facenet_data import load_cache
    from model_runtime.face.facenet_synth import SYNTH_SOURCE
    from model_runtime.face.train_facenet import split_synthetic

    real = {k: v[:2] for k, v in synth_rows.items() if k != "yaw_deg"}
    np.savez(tmp_path / "video_x.npz", **real)
    np.savez(tmp_path / f"{SYNTH_SOURCE}.npz", **synth_rows)
    data = load_cache(tmp_path)
    assert len(data["crop"]) == 8 and "yaw_deg" not in data
    synth, real_rows = split_synthetic(data, np.arange(8))
    names = [str(n) for n in data["source_names"]]
    assert len(synth) == 6 and len(real_rows) == 2
    assert all(names[data["source"][i]] == SYNTH_SOURCE for i in synth)


def test_pose_only_synthetic_rows_do_not_train_the_expression_head(synth_rows, model_corr):
    """``synth_expression=False``: a synthetic row's loss reaches the network's pose, identity, albedo and
    light, but not its expression output (the geometry uses the exact expression, and the expression
    distillation counts real rows only); real rows still train it."""
    from model_runtime.face.facenet import FaceNetModule
    from model_runtime.face.train_facenet import ModelTensors, TrainConfig, augment, losses

    m, corr = model_corr
    mt = ModelTensors(m, corr, "cpu")
    torch.manual_seed(0)
    net = FaceNetModule(m.sizes, expression_box=m.kind == "builtin")
    cfg = TrainConfig(synth_expression=False)
    b = augment(synth_rows, np.arange(4), cfg, torch.Generator().manual_seed(2), "cpu", net.input_size)
    b["synthetic"] = torch.tensor([False, False, True, True])
    out = {k: v.detach().requires_grad_(True) for k, v in net.split(net(b["x"])).items()}
    sum(losses(out, b, mt, cfg, net.input_size).values()).backward()
    ge = out["expression"].grad
    e = out["expression"].detach()
    priors = 2 * cfg.w_expression * e / 4 + (cfg.w_expression_l1 * torch.sign(e) / 4 if mt.box else 0.0)
    assert torch.allclose(ge[2:], priors[2:], atol=1e-6)              # the priors' pull only
    assert float((ge[:2] - priors[:2]).abs().max()) > 1e-4            # real rows: the landmark terms too
    assert float(out["identity"].grad[2:].abs().max()) > 0 and float(out["sh"].grad[2:].abs().max()) > 0


def test_fine_tuning_starts_from_the_given_weights(tmp_path, synth_rows, model_corr):
    """``train(init_from=...)`` (``train facenet --init-from``) starts from a weights file: with a zero
    learning rate the trained network is the file's, which a fresh start is not; a checkpoint to resume
    wins over it."""
    from model_runtime.face.facenet import FaceNetModule, save_weights
    from model_runtime.face.facenet_data import load_cache
    from model_runtime.face.train_facenet import TrainConfig, train

    m, corr = model_corr
    np.savez(tmp_path / "video_x.npz", **{k: v for k, v in synth_rows.items() if k != "yaw_deg"})
    data = load_cache(tmp_path)
    torch.manual_seed(123)
    src = FaceNetModule(m.sizes, expression_box=m.kind == "builtin")
    save_weights(src, tmp_path / "w.pt", {})
    want = {k: v.detach().half().float() for k, v in src.named_parameters()}
    cfg = TrainConfig(steps=1, batch=2, lr=0.0, eval_every=10)
    quiet = lambda s: None  # noqa: E731
    net, _ = train(data, m, corr, cfg, tmp_path / "run", log=quiet, init_from=tmp_path / "w.pt")
    for k, v in net.named_parameters():
        assert torch.equal(v.detach(), want[k]), k
    fresh, _ = train(data, m, corr, cfg, tmp_path / "run2", log=quiet)
    assert any(not torch.equal(v.detach(), want[k]) for k, v in fresh.named_parameters())
    resumed, _ = train(data, m, corr, TrainConfig(steps=1, batch=2, lr=0.0, eval_every=10), tmp_path / "run2",
                       resume=True, log=quiet, init_from=tmp_path / "w.pt")
    for (k, a), (_, b) in zip(resumed.named_parameters(), fresh.named_parameters()):
        assert torch.equal(a.detach(), b.detach()), k
    from model_runtime.core.errors import ModelFileError

    (tmp_path / "junk.pt").write_bytes(b"not a state dict")
    with pytest.raises(ModelFileError, match="junk.pt"):
        train(data, m, corr, cfg, tmp_path / "run3", log=quiet, init_from=tmp_path / "junk.pt")


def test_select_rows_keeps_the_chosen_faces_of_every_array(tmp_path, synth_rows):
    """``facenet_data.select_rows`` (``train facenet --synth-min-yaw``): the rows kept, in order, in every
    per-face array; the source names untouched."""
    from model_runtime.face.facenet_data import load_cache, select_rows
    from model_runtime.face.facenet_synth import SYNTH_SOURCE

    np.savez(tmp_path / "video_x.npz", **{k: v[:2] for k, v in synth_rows.items() if k != "yaw_deg"})
    np.savez(tmp_path / f"{SYNTH_SOURCE}.npz", **synth_rows)
    data = load_cache(tmp_path)
    keep = np.array([True, True] + [abs(y) >= 40 for y in synth_rows["yaw_deg"]])
    out = select_rows(data, keep)
    assert len(out["crop"]) == keep.sum() and list(out["source_names"]) == list(data["source_names"])
    np.testing.assert_array_equal(out["crop"], data["crop"][keep])
    np.testing.assert_array_equal(out["source"], data["source"][keep])
