"""DetNet: module contracts, Eq. 6 against brute force, 3D read at argmax, loss masking, checkpoints,
weights files and the registered detector on a real frame (tiny widths, 64-px inputs: fast)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from model_runtime.core.errors import ModelFileError
from model_runtime.detectors import Detection, Detector, make_detector
from model_runtime.detectors.detnet.config import BODY_FLIP, BODY_PARENTS, HAND_PARENTS, DetNetConfig
from model_runtime.detectors.detnet.crop import crop, crop_to_image, image_to_crop
from model_runtime.detectors.detnet.data import LABEL_SHAPES, flip_labels, make_batch, teacher_labels
from model_runtime.detectors.detnet.decode import decode
from model_runtime.detectors.detnet.losses import LossWeights, detnet_loss, gt_hand_boxes
from model_runtime.detectors.detnet.network import DetNet, MainFeatNet, SuppFeatNet
from model_runtime.detectors.detnet.posenet import PoseNet, read_at_argmax, subpixel_peak
from model_runtime.detectors.detnet.train import Trainer, cpu_training_guard
from model_runtime.detectors.detnet.weights import DEFAULT_WEIGHTS, load_weights, save_weights
from model_runtime.detectors.detnet.window import sliding_window, window_sums

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(main_c=8, main_blocks=1, pose_c=8, supp_c=4, hand_c=8, body_feat_c=4)


def tiny(hand_features="both") -> DetNetConfig:
    return DetNetConfig(hand_features=hand_features, input_size=64, hand_crop=16, hand_map=8, widths=TINY)


@pytest.fixture(scope="module")
def demo_samples():
    """Three real frames of the sample clip labelled by the MediaPipe teacher (as in training)."""
    cap = cv2.VideoCapture(str(ROOT / "samples/demo_clip.mp4"))
    out = []
    with make_detector("mediapipe") as mp:
        for i in range(3):
            ok, frame = cap.read()
            assert ok
            d = mp.detect(frame)
            assert d.person
            lab = teacher_labels(d.body_2d, d.body_3d, d.hands_2d, d.hands_3d, d.wholebody_2d[23:91])
            if lab["hand_vis"][0].sum() == 0:     # keep a left hand in every sample: copy the right hand's labels
                lab["hand_2d"][0], lab["hand_vis"][0] = lab["hand_2d"][1], lab["hand_vis"][1]
            out.append((cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), lab))
    return out


def test_module_shapes():
    x = torch.rand(2, 3, 16, 16)
    maps = PoseNet(3, 5, 8)(x)
    assert maps.K.shape == (2, 5, 16, 16) and maps.D.shape == (2, 5, 3, 16, 16) and maps.L.shape == (2, 5, 3, 16, 16)
    assert maps.flat().shape == (2, 35, 16, 16)
    assert MainFeatNet(8, 2)(torch.rand(2, 3, 16, 16)).shape == (2, 8, 8, 8)
    assert SuppFeatNet(4)(torch.rand(3, 3, 16, 16)).shape == (3, 4, 8, 8)
    assert len(SuppFeatNet(4).net) == 9       # stem + 8 ResNet blocks


@pytest.mark.parametrize("hand_features", ["both", "supp", "body"])
def test_detnet_forward_and_decode(hand_features):
    cfg = tiny(hand_features)
    net = DetNet(cfg).eval()
    assert (net.supp is None) == (hand_features == "body") and (net.body_feat is None) == (hand_features == "supp")
    out = net(torch.rand(2, 3, 64, 64))
    assert out.basic.K.shape == (2, 15, 8, 8) and out.ext.K.shape == (2, 9, 8, 8) and out.heat.shape == (2, 3, 8, 8)
    assert out.hands.K.shape == (2, 2, 21, 8, 8) and out.hands.L.shape == (2, 2, 21, 3, 8, 8)
    assert out.hand_boxes.shape == (2, 2, 3) and out.face_box.shape == (2, 3)
    d = decode(out, cfg)
    assert d.body_xy.shape == (2, 24, 2) and d.body_3d.shape == (2, 24, 3) and d.hand_3d.shape == (2, 2, 21, 3)
    assert torch.all(d.body_3d[:, 0] == 0) and torch.all(d.hand_3d[:, :, 0] == 0)
    assert torch.all((d.body_conf >= 0) & (d.body_conf <= 1))


def test_window_matches_brute_force():
    rng = np.random.default_rng(0)
    H = torch.from_numpy(rng.random((4, 7, 9)).astype(np.float32) ** 6)
    H[1] = 0
    H[1, 2:4, 5:7] = 1.0                                        # a compact blob
    sums = window_sums(H)
    for n in range(4):
        for s in range(1, 8):
            for u in range(7):
                for v in range(9):
                    ref = H[n, u:u + s, v:v + s].sum() if u + s <= 7 and v + s <= 9 else -np.inf
                    assert np.isclose(float(sums[n, s - 1, u, v]), float(ref), atol=1e-4)
    for t in (0.3, 0.6, 0.9):
        box, total = sliding_window(H, t)
        for n in range(4):
            best = None
            for s in range(1, 8):       # Eq. 6: smallest side with a window above t x total, then its best place
                cands = [(float(H[n, u:u + s, v:v + s].sum()), u, v) for u in range(7 - s + 1) for v in range(9 - s + 1)]
                m, u, v = max(cands)
                if m > t * float(H[n].sum()) or s == 7:     # no window passes: the largest one
                    best = (v, u, s)
                    break
            assert tuple(int(b) for b in box[n]) == best
    box, _ = sliding_window(H[1:2], 0.9)
    assert tuple(int(b) for b in box[0]) == (5, 2, 2)


def test_read_at_argmax_and_subpixel():
    K = torch.zeros(2, 3, 5, 6)
    L = torch.randn(2, 3, 3, 5, 6)
    peaks = [(1, 2), (4, 5), (0, 0)]
    for k, (r, c) in enumerate(peaks):
        K[:, k, r, c] = 1.0
    got = read_at_argmax(K, L)
    for k, (r, c) in enumerate(peaks):
        assert torch.equal(got[:, k], L[:, k, :, r, c])
    K2 = torch.zeros(1, 1, 5, 5)
    K2[0, 0, 2, 2], K2[0, 0, 2, 3] = 1.0, 1.0
    xy, val = subpixel_peak(K2)
    assert torch.allclose(xy[0, 0], torch.tensor([2.5, 2.0])) and float(val) == 1.0


def test_crop_round_trip_and_flip():
    img = torch.arange(64.0).reshape(1, 1, 8, 8)
    boxes = torch.tensor([[4.0, 4.0, 8.0]])
    full = crop(img, torch.tensor([0]), boxes, 8, 8.0)
    assert torch.allclose(full, img, atol=1e-5)                 # the whole-image box reproduces the image
    flipped = crop(img, torch.tensor([0]), boxes, 8, 8.0, flip=torch.tensor([True]))
    assert torch.allclose(flipped, img.flip(-1), atol=1e-5)
    p = torch.tensor([[[3.0, 5.0]]])
    b = torch.tensor([[10.0, 20.0, 16.0]])
    assert torch.allclose(crop_to_image(image_to_crop(p, b, 8.0), b, 8.0), p)


def test_tables():
    assert BODY_PARENTS[0] == -1 and (BODY_PARENTS[1:] < np.arange(1, 24)).all()
    assert HAND_PARENTS[0] == -1 and HAND_PARENTS[1] == 0 and HAND_PARENTS[4] == 3 and HAND_PARENTS[5] == 0
    assert (BODY_FLIP[BODY_FLIP] == np.arange(24)).all() and BODY_FLIP[0] == 0


def _labels_from(samples, cfg):
    return make_batch(samples, cfg.input_size, np.random.default_rng(0), augment=False)


def test_losses_off_without_labels(demo_samples):
    cfg = tiny()
    net = DetNet(cfg)
    image, labels = _labels_from(demo_samples[:2], cfg)
    labels["hand_vis"].zero_()                                   # no hand labels: lambda_h = 0
    labels["face_vis"].zero_()                                   # no face labels: lambda_f = 0
    labels["body_has3d"].zero_()                                 # 2D only: w_d = w_l = 0
    with cpu_training_guard("cpu"):                              # as in Trainer.train_step
        out = net(image, labels["attention"], gt_hand_boxes(labels, cfg, LossWeights()))
        total, parts = detnet_loss(out, labels, cfg)
        total.backward()
    assert float(parts["body_k"]) > 0
    for k in ("hand_k", "hand_d", "hand_l", "heat_hand", "heat_face", "body_d", "body_l"):
        assert float(parts[k]) == 0.0, k
    for p in net.hand_nets.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert torch.count_nonzero(net.basic.head.weight.grad) > 0
    # the heat-map conv gets no gradient from the missing hands/face: its only input is Eq. 12/13
    assert net.heat.weight.grad is None or torch.count_nonzero(net.heat.weight.grad) == 0


def test_hand_terms_on_with_hand_labels(demo_samples):
    cfg = tiny()
    net = DetNet(cfg)
    image, labels = _labels_from(demo_samples[:2], cfg)
    assert labels["hand_vis"][:, 0].sum() > 0
    with cpu_training_guard("cpu"):
        out = net(image, labels["attention"], gt_hand_boxes(labels, cfg, LossWeights()))
        total, parts = detnet_loss(out, labels, cfg)
        total.backward()
    assert float(parts["hand_k"]) > 0 and float(parts["heat_hand"]) > 0
    assert torch.count_nonzero(net.hand_nets[0].head.weight.grad) > 0


def test_flip_labels_is_an_involution(demo_samples):
    _, lab = demo_samples[0]
    back = flip_labels(flip_labels(lab, 640.0), 640.0)
    for k in LABEL_SHAPES:
        assert np.allclose(back[k], lab[k]), k


class _Frames:
    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def test_checkpoint_resume_is_exact(demo_samples, tmp_path):
    cfg = tiny()
    src = [(_Frames(demo_samples), 1.0)]

    def trainer():
        return Trainer(cfg, src, demo_samples[:1], steps=10, batch=2, seed=3)

    a = trainer()
    a.train(tmp_path / "a", until=3, checkpoint_every=100, log_every=1, export=tmp_path / "a.pt", log=lambda s: None)
    b = trainer()
    b.train(tmp_path / "b", until=2, checkpoint_every=2, log_every=1, log=lambda s: None)
    c = trainer()
    c.load(tmp_path / "b" / "checkpoint.pt")
    assert c.step == 2
    c.train(tmp_path / "b", until=3, checkpoint_every=100, log_every=1, log=lambda s: None)
    for (k, va), vc in zip(a.net.state_dict().items(), c.net.state_dict().values()):
        assert torch.allclose(va.float(), vc.float(), atol=1e-6), k
    assert (tmp_path / "a" / "curves.csv").read_text().count("\n") == 4      # header + 3 rows
    net, meta = load_weights(tmp_path / "a.pt")                              # exported best weights load
    assert meta["step"] == 3 and net.config == cfg
    d = trainer()
    d.init_from(tmp_path / "b" / "checkpoint.pt")                           # weights only, a new run
    assert d.step == 0
    assert all(torch.equal(x, y) for x, y in zip(d.net.state_dict().values(),
                                                  torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["net"].values()))
    e = trainer()
    e.init_from(tmp_path / "a.pt")                                          # or from an exported weights file
    assert e.step == 0
    assert all(torch.equal(x, y) for x, y in zip(e.net.state_dict().values(), net.state_dict().values()))



def test_training_only_the_hand_branch_leaves_the_body_as_it_was(demo_samples, tmp_path):
    """``parts="hands"``: the trunk, the body PoseNets and the heat-maps (BatchNorm statistics included) are
    bit-identical after training; the hand branch moved; a checkpoint of it does not resume as an all-parts run."""
    cfg = tiny()
    src = [(_Frames(demo_samples), 1.0)]
    t = Trainer(cfg, src, demo_samples[:1], steps=10, batch=2, seed=3, parts="hands")
    before = {k: v.clone() for k, v in t.net.state_dict().items()}
    t.train(tmp_path / "h", until=3, checkpoint_every=100, log_every=1, log=lambda s: None)
    after = t.net.state_dict()
    frozen = [k for k in before if k.split(".")[0] in ("main", "basic", "ext", "heat")]
    hand = [k for k in before if k.split(".")[0] in ("supp", "body_feat", "hand_nets") and before[k].is_floating_point()]
    assert frozen and hand
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in hand)
    with pytest.raises(ValueError, match="trained parts"):
        Trainer(cfg, src, demo_samples[:1], steps=10, batch=2, seed=3).load(tmp_path / "h" / "checkpoint.pt")
    with pytest.raises(ValueError, match="parts must be"):
        Trainer(cfg, src, [], steps=10, parts="face")

def test_weights_round_trip_and_bad_files(tmp_path):
    cfg = tiny()
    net = DetNet(cfg).eval()
    path = save_weights(net, tmp_path / "w.pt", {"note": "test"}, half=False)
    loaded, meta = load_weights(path)
    x = torch.rand(1, 3, 64, 64)
    assert torch.allclose(loaded(x).basic.K, net(x).basic.K, atol=1e-5) and meta["note"] == "test"
    with pytest.raises(ModelFileError, match="is missing"):
        load_weights(tmp_path / "none.pt")
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ModelFileError, match="not a readable DetNet weights file"):
        load_weights(bad)
    d = torch.load(path, weights_only=True)
    d["state_dict"]["basic.head.weight"][0, 0] = float("nan")
    torch.save(d, bad)
    with pytest.raises(ModelFileError, match=r"field 'state_dict.basic.head.weight' holds NaN"):
        load_weights(bad)
    d = torch.load(path, weights_only=True)
    d["state_dict"]["heat.bias"] = torch.zeros(5)
    torch.save(d, bad)
    with pytest.raises(ModelFileError, match=r"'state_dict.heat.bias' has shape \(5,\)"):
        load_weights(bad)
    d["version"] = 99
    torch.save(d, bad)
    with pytest.raises(ModelFileError, match="field 'version'"):
        load_weights(bad)
    with pytest.raises(ModelFileError, match="trunc.pt"):
        make_detector("detnet", weights=str(tmp_path / "trunc.pt"))


def test_shipped_detector_on_real_frame():
    assert DEFAULT_WEIGHTS.is_file(), f"{DEFAULT_WEIGHTS} is not shipped"
    cap = cv2.VideoCapture(str(ROOT / "samples/demo_clip.mp4"))
    ok, frame = cap.read()
    assert ok
    with make_detector("detnet", face="none") as det:
        assert isinstance(det, Detector) and det.name == "detnet"
        d = det.detect(frame)
        assert isinstance(d, Detection)
        d.validate()
        assert d.image_size == (frame.shape[1], frame.shape[0]) and d.person
        assert np.isfinite(d.body_2d).all() and np.isfinite(d.body_3d).all() and np.isfinite(d.hands_3d).all()
        batch = det.detect_batch([frame, frame[:, ::-1].copy()])
        # oneDNN picks its convolution kernels by batch size: 0.007 px apart on an AMD EPYC VM
        assert np.allclose(batch[0].body_2d, d.body_2d, atol=0.05)
        for t in (0, 33, 66):                                  # video mode: the previous person square first
            det.detect(frame, t).validate()
        det.reset()
        hand = det.detect_hand(frame[:128, :128].copy(), side_hint="left")
        assert hand is None or (hand.keypoints_3d.shape == (21, 3) and hand.side == "left")


def test_eval_flag_detnet_weights_loads_that_file(tmp_path):
    """``--detnet-weights`` (every eval's detector flags) builds DetNet from the given file, not the shipped one."""
    import argparse

    from model_runtime.detectors import add_detector_arguments, detector_from_options

    path = save_weights(DetNet(tiny()).eval(), tmp_path / "mine.pt", {"note": "mine"})
    parser = argparse.ArgumentParser()
    add_detector_arguments(parser)
    det = detector_from_options(parser.parse_args(["--detector", "detnet", "--device", "cpu",
                                                   "--detnet-weights", str(path)]))
    try:
        assert det.meta["note"] == "mine" and det.config == tiny()
    finally:
        det.close()
    with pytest.raises(ModelFileError, match="nothing.pt"):
        detector_from_options(parser.parse_args(["--detector", "detnet", "--device", "cpu",
                                                 "--detnet-weights", str(tmp_path / "nothing.pt")]))


def test_traced_cpu_graph_equals_the_eager_network():
    """The CPU detector's traced, frozen graph (``jit``, the default) gives the eager network's detections on
    real frames of the sample clip, for batch sizes 1 and 2 (one graph each), in video mode too."""
    cap = cv2.VideoCapture(str(ROOT / "samples/demo_clip.mp4"))
    frames = []
    for _ in range(12):
        ok, frame = cap.read()
        assert ok
        frames.append(frame)
    frames = frames[::4]
    with make_detector("detnet", face="none") as jit, make_detector("detnet", face="none", jit=False) as eager:
        assert jit.jit and not eager.jit
        pairs = [(jit.detect(f, 40 * i), eager.detect(f, 40 * i)) for i, f in enumerate(frames)]
        pairs += list(zip(jit.detect_batch(frames[:2]), eager.detect_batch(frames[:2])))
        assert set(jit._traced) == {1, 2}
    assert any(a.person for a, _ in pairs)
    for a, b in pairs:
        assert a.person == b.person
        np.testing.assert_allclose(a.body_2d, b.body_2d, atol=1e-2)
        np.testing.assert_allclose(a.body_3d, b.body_3d, atol=1e-4)
        np.testing.assert_allclose(a.hands_2d, b.hands_2d, atol=1e-2)
        np.testing.assert_allclose(a.hands_3d, b.hands_3d, atol=1e-4)


def test_bench_measures_the_detnet_pipeline_against_mediapipe_alone(capsys):
    """``bench --detector detnet``: issue 13's yardstick is MediaPipe Holistic alone in the same run, so the
    baseline runs are MediaPipe's (key ``mediapipe``), ``ratio`` is the DetNet pipeline over them, and DetNet
    alone is reported beside (``detector_alone``). Real runs on 6 frames of the sample clip (no speed asserted)."""
    import json

    from model_runtime.cli.main import main

    assert main(["bench", str(ROOT / "samples/demo_clip.mp4"), "--frames", "6", "--repeat", "1",
                 "--detector", "detnet", "--json", "--no-face"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["detector"] == "detnet" and out["frames"] == 6
    assert len(out["mediapipe"]["runs_fps"]) == 2 and out["detector_alone"]["frames"] == 6
    assert out["pipeline"]["frames"] == 6 and out["pipeline"]["fps"] > 0
    mp = out["mediapipe"]["runs_fps"]
    assert out["ratio"] == pytest.approx(out["pipeline"]["fps"] / (0.5 * (mp[0] + mp[1])))


def test_detector_runs_eagerly_where_tracing_fails(monkeypatch, caplog):
    """A torch whose ``torch.jit.trace`` fails (it is deprecated in 2.13): one log line, then the eager network."""
    cap = cv2.VideoCapture(str(ROOT / "samples/demo_clip.mp4"))
    ok, frame = cap.read()
    assert ok

    def no_trace(*a, **k):
        raise RuntimeError("tracing removed")

    with make_detector("detnet", face="none", jit=False) as eager:
        ref = eager.detect(frame)
    monkeypatch.setattr(torch.jit, "trace", no_trace)
    with make_detector("detnet", face="none") as det, caplog.at_level("WARNING"):
        d = det.detect(frame)
        assert not det.jit and not det._traced
    assert "tracing removed" in caplog.text and "eager" in caplog.text
    np.testing.assert_allclose(d.body_2d, ref.body_2d, atol=1e-4)


def test_capture_options_detnet_weights_reach_the_pipeline(tmp_path):
    """``capture``/``bench``/``serve`` take ``--detnet-weights`` (CaptureOptions.detnet_weights): the pipeline's
    DetNet is built from that file, and a missing one is refused naming it before anything runs."""
    from model_runtime.capture.pipeline import build_pipeline
    from model_runtime.core.options import CaptureOptions, OptionError

    path = save_weights(DetNet(tiny()).eval(), tmp_path / "candidate.pt", {"note": "candidate"})
    pipe = build_pipeline(CaptureOptions(device="cpu", detector="detnet", detnet_weights=str(path), face=False))
    try:
        assert pipe.detector.meta["note"] == "candidate" and pipe.detector.config == tiny()
    finally:
        pipe.detector.close()
    assert CaptureOptions.from_mapping({"detector": "detnet", "detnet_weights": str(path)}).detnet_weights == str(path)
    with pytest.raises(ModelFileError, match="gone.pt"):
        build_pipeline(CaptureOptions(device="cpu", detector="detnet", detnet_weights=str(tmp_path / "gone.pt"), face=False))
    with pytest.raises(OptionError, match="detnet_weights"):
        CaptureOptions(detnet_weights="")
