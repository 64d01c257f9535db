"""FaceNet: network sizes (built-in and BFM), losses on a real crop, weights files, ``--face net`` captures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model_runtime.core.errors import ModelFileError
from model_runtime.face.facenet import (
    FaceNet, FaceNetModule, crop_affine, crop_box, crop_pose, face_anchor, save_weights, weights_path,
)
from model_runtime.models.load import load_face_model

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")
BFM_SIZES = {"identity": 80, "expression": 64, "albedo": 80, "sh": 27}


@pytest.fixture(scope="module")
def face_model():
    return load_face_model()


@pytest.mark.parametrize("kind", ["builtin", "bfm"])
def test_output_sizes_follow_the_face_model(face_model, kind):
    """Heads sized by the loaded model (built-in 80/52/80/27) and by BFM's 80/64/80/27; ARKit weights boxed."""
    sizes = face_model.sizes if kind == "builtin" else BFM_SIZES
    net = FaceNetModule(sizes, expression_box=kind == "builtin").eval()
    x = torch.rand(3, 3, net.input_size, net.input_size)
    with torch.no_grad():
        out = net.split(net(x))
    for k in ("identity", "expression", "albedo", "sh"):
        assert out[k].shape == (3, sizes[k]), k
    assert out["rot6d"].shape == (3, 6) and out["uv"].shape == (3, 2) and out["log_scale"].shape == (3,)
    if kind == "builtin":
        assert float(out["expression"].min()) >= 0 and float(out["expression"].max()) <= 1
    K = torch.tensor([[200.0, 0, 48], [0, 200.0, 48], [0, 0, 1]]).expand(3, 3, 3)
    R, t = crop_pose(out, K, torch.zeros(3), net.input_size)
    assert R.shape == (3, 3, 3) and t.shape == (3, 3)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(3, 3, 3), atol=1e-5)
    assert bool((t[:, 2] > 0).all())                    # in front of the camera from the start


def test_crop_affine_maps_box_centre_to_crop_centre():
    box = np.array([[100.0, 50.0, 40.0, 60.0]])
    A = crop_affine(crop_box(box, 1.5), 96)[0]
    centre = A[:, :2] @ np.array([120.0, 80.0]) + A[:, 2]
    assert np.allclose(centre, [48, 48])
    assert np.isclose(A[0, 0], 96 / 90.0)               # side = 1.5 x the longer box side


@pytest.fixture(scope="module")
def real_crops(realdata, face_model):
    """Three real face frames of LivePortrait d0 through the real detector and the fit (the cache path)."""
    from model_runtime.detectors import make_detector
    from model_runtime.face.facenet_data import Source, cache_source
    from model_runtime.face.fit import FaceFitter
    from model_runtime.face.stage import FaceFitStage

    clip = realdata / "LivePortrait/assets/examples/driving/d0.mp4"
    det = make_detector("mediapipe")
    try:
        data = cache_source(Source("d0", (clip,), True), det, FaceFitStage(FaceFitter(face_model)), max_frames=3)
    finally:
        det.close()
    assert data is not None and len(data["crop"]) == 3
    return data


def test_losses_decrease_on_real_crops(real_crops, face_model):
    """A few Adam steps on real crops lower both the landmark and the photometric term."""
    from model_runtime.face.correspondence import correspondence_for
    from model_runtime.face.train_facenet import ModelTensors, TrainConfig, augment, losses

    torch.manual_seed(0)
    cfg = TrainConfig(w_distill=0.0, w_distill_coef=0.0, w_distill_expression=0.0, w_distill_sh=0.0)  # self-supervised
    mt = ModelTensors(face_model, correspondence_for(face_model), "cpu", cfg.photo_stride)
    net = FaceNetModule(face_model.sizes, expression_box=True)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    batch = augment(real_crops, np.arange(3), cfg, torch.Generator().manual_seed(0), "cpu", jitter=False)
    history = []
    for _ in range(25):
        terms = losses(net.split(net(batch["x"])), batch, mt, cfg)
        history.append({k: float(v) for k, v in terms.items()})
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    first, last = history[0], history[-1]
    assert last["landmark"] < 0.7 * first["landmark"], (first, last)
    assert last["photo"] < first["photo"], (first, last)
    assert all(np.isfinite(v) for v in last.values())


def test_augmented_crop_keeps_landmarks_on_the_face(real_crops):
    """The jittered crop's landmarks land where the teacher's mesh projects (camera of the crop is exact)."""
    from model_runtime.face.correspondence import correspondence_for
    from model_runtime.face.train_facenet import ModelTensors, TrainConfig, augment, project_batch

    model = load_face_model()
    mt = ModelTensors(model, correspondence_for(model), "cpu")
    b = augment(real_crops, np.arange(3), TrainConfig(roll_deg=30.0), torch.Generator().manual_seed(3), "cpu")
    teacher = project_batch(mt.landmarks(b["identity"], b["expression"]) @ b["R"].transpose(1, 2) + b["t"][:, None],
                            b["K"])
    err = (teacher - b["landmarks"]).norm(dim=-1).mean(1) / b["face_size"]
    assert float(err.max()) < 0.06                      # the fit's own residual, a few % of the face


def _write_weights(tmp_path: Path, model, meta_patch=None) -> Path:
    from model_runtime.face.correspondence import model_signature
    from model_runtime.face.facenet import CROP_SCALE, FACENET_VERSION

    net = FaceNetModule(model.sizes, expression_box=True)
    meta = {"version": FACENET_VERSION, "face_model": model.kind, "face_model_signature": model_signature(model),
            "sizes": model.sizes, "input_size": net.input_size, "crop_scale": CROP_SCALE, "width": 16,
            "hidden": 192, "training": {}}
    meta.update(meta_patch or {})
    pt = weights_path(model, tmp_path)
    save_weights(net, pt, meta)
    return pt


def test_weights_round_trip(tmp_path, face_model):
    pt = _write_weights(tmp_path, face_model)
    net = FaceNet(face_model, weights=pt)
    crops = np.random.default_rng(0).integers(0, 255, (2, net.input_size, net.input_size, 3), dtype=np.uint8)
    a = net.process(crops)
    ref = FaceNetModule(face_model.sizes, expression_box=True)
    ref.load_state_dict({k: v.float() for k, v in torch.load(pt, weights_only=True).items()})
    ref.eval()
    from model_runtime.face.facenet import to_input

    with torch.no_grad():
        out = ref.split(ref(to_input(crops)))
    assert np.allclose(a.expression, out["expression"].numpy(), atol=1e-4)
    assert np.allclose(a.sh, out["sh"].numpy(), atol=1e-4)
    # the inference path (folded BatchNorm, channels-last trace) gives the plain module's outputs
    for k in ("identity", "rot6d", "uv", "log_scale"):
        assert np.allclose(getattr(a, k), out[k].numpy(), atol=1e-4), k
    assert a.identity.shape == (2, face_model.sizes["identity"])


@pytest.mark.parametrize("case, field", [
    ("corrupt", None), ("version", "version"), ("signature", "face_model_signature"), ("sizes", "sizes"),
    ("nan", "trunk.0.0.weight"), ("no_json", None), ("kind", "face_model"),
])
def test_bad_weights_give_one_line_model_file_error(tmp_path, face_model, case, field):
    pt = _write_weights(tmp_path, face_model, {"version": 99} if case == "version" else
                        {"face_model_signature": "0v0f-000"} if case == "signature" else
                        {"sizes": BFM_SIZES} if case == "sizes" else
                        {"face_model": "bfm"} if case == "kind" else None)
    if case == "corrupt":
        pt.write_bytes(b"not a torch file" * 10)
    elif case == "nan":
        state = torch.load(pt, weights_only=True)
        state["trunk.0.0.weight"][0, 0, 0, 0] = float("nan")
        torch.save(state, pt)
    elif case == "no_json":
        pt.with_suffix(".json").unlink()
    with pytest.raises(ModelFileError) as e:
        FaceNet(face_model, weights=pt)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg
    assert e.value.field == field
    assert e.value.exit_code == 5


def test_shipped_weights_match_the_builtin_face(face_model):
    net = FaceNet(face_model)
    assert net.meta["face_model"] == "builtin" and net.meta["training"]["faces"]
    assert "AFLW2000" not in json.dumps(net.meta["training"]["faces"])
    assert weights_path(face_model).stat().st_size < 4_000_000


def test_face_option_parses_and_refuses_unknown_modes():
    import argparse

    from model_runtime.core.options import OptionError, add_arguments, from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert from_args(p.parse_args(["--face", "net+fit"])).face_mode == "net+fit"
    assert from_args(p.parse_args([])).face_mode == "fit"
    from model_runtime.core.options import CaptureOptions

    with pytest.raises(OptionError, match="face_mode"):
        CaptureOptions(face_mode="mesh")


@pytest.mark.parametrize("mode", ["net", "net+fit"])
def test_capture_cli_with_facenet(tmp_path, mode):
    """The real capture CLI on the repo's sample clip, a few frames, FaceNet in the face stage."""
    out = tmp_path / "cap.npz"
    r = subprocess.run([sys.executable, "-m", "model_runtime", "capture", str(ROOT / "samples/demo_clip.mp4"),
                        "-o", str(out), "--end", "5", "--face", mode, "--device", "cpu", "--no-align"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    from model_runtime.core.capture_file import load_capture

    cap = load_capture(out)
    expr = np.asarray(cap["face_expression"])
    assert expr.shape[0] == 5 and np.isfinite(expr).all()
    assert np.isfinite(np.asarray(cap["face_sh"])).all()
    assert np.abs(expr).sum() > 0                        # the face stage ran on the detected face


def test_pose_in_camera_puts_the_anchor_under_the_predicted_crop_pixel():
    """The crop camera (focal a f, principal point mapped by A) and the image camera agree: the anchor
    lands at the predicted crop position, mapped back to the image."""
    from model_runtime.face.facenet import FRONTAL_ROT6D, FaceNetPrediction, pose_in_camera
    from model_runtime.face.render import intrinsics, project

    box = np.array([[300.0, 120.0, 80.0, 100.0], [20.0, 30.0, 40.0, 40.0]])
    A = crop_affine(crop_box(box), 96)
    z = np.zeros((2, 1), np.float32)
    pred = FaceNetPrediction(identity=z, expression=z, albedo=z, sh=z, rot6d=np.tile(FRONTAL_ROT6D, (2, 1)),
                             uv=np.array([[0.1, -0.2], [0.0, 0.0]]), log_scale=np.array([0.3, -0.2]))
    K = intrinsics(640, 480)
    anchor = np.array([0.0, 0.6, 0.1])
    R, t = pose_in_camera(pred, A, K, anchor, 96)
    px = project(np.einsum("bij,j->bi", R.astype(np.float64), anchor) + t, K)          # (2, 2) image px
    crop_px = np.einsum("bij,bj->bi", A[:, :, :2], px) + A[:, :, 2]
    assert np.allclose(crop_px, (pred.uv + 0.5) * 96, atol=1e-3)
    assert np.allclose(R[0], np.diag([1.0, -1.0, -1.0]), atol=1e-6)


def test_aflw2000_net_timing_compares_with_the_plain_module(realdata, capsys):
    """``eval aflw2000 --face net --facenet-compare`` on one real image: FaceNet's NME, its CPU time and
    the plain module's, timed call by call (the two give the same landmarks, so one NME)."""
    from model_runtime.cli.main import main

    data = realdata / "PRNet" / "TestImages" / "AFLW2000"
    if not data.is_dir():
        pytest.skip(f"{data} not available")
    args = ["eval", "aflw2000", "--dir", str(data), "--limit", "1", "--face", "net", "--device", "cpu", "--json"]
    assert main(args + ["--timing-repeats", "3", "--facenet-compare"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["images"] == 1 and out["net_cpu_ms_per_face"] > 0 and out["plain_net_cpu_ms_per_face"] > 0
    assert out["net_cpu_ratio"] == pytest.approx(out["net_cpu_ms_per_face"] / out["plain_net_cpu_ms_per_face"])
    assert main(args + ["--facenet-plain"]) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert plain["nme"] == pytest.approx(out["nme"], abs=1e-4)
    assert "net_cpu_ratio" not in plain


def test_net_stage_takes_the_gaze_from_the_iris(realdata):
    """``--face net``: the eyeLook* keys are the iris gaze (face/gaze.py, as the fit's stage writes them),
    the other keys FaceNet's own; on real LivePortrait d0 frames with MediaPipe's iris landmarks."""
    import cv2

    from model_runtime.detectors import make_detector
    from model_runtime.face.facenet_stage import NetFaceStage, usable_box
    from model_runtime.face.gaze import GazeEstimator, angles_to_keys
    from model_runtime.face.render import intrinsics

    clip = realdata / "LivePortrait/assets/examples/driving/d0.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not available")
    face = load_face_model("builtin")
    stage = NetFaceStage(FaceNet(face))
    names = stage.expression_names
    look = np.array([n.startswith("eyeLook") for n in names])
    assert look.sum() == 8
    vc, det, ref = cv2.VideoCapture(str(clip)), make_detector("mediapipe"), GazeEstimator()
    try:
        for i in range(6):
            ok, img = vc.read()
            assert ok
            if i == 0:
                stage.reset(intrinsics(img.shape[1], img.shape[0]))
            d = det.detect(img, timestamp_ms=40 * i)
            assert d.face_landmarks is not None and d.extras.get("iris_landmarks_px") is not None
            expr, _ = stage.track(img, d)
            want = angles_to_keys(ref.update(d.face_landmarks, d.extras["iris_landmarks_px"]), names)
            np.testing.assert_allclose(expr[look], want[look], atol=1e-6)
            pred, _, _ = stage.net.predict(img, usable_box(d), stage.K)
            np.testing.assert_allclose(expr[~look], pred.expression[0][~look], atol=1e-6)
    finally:
        det.close()
        vc.release()


def test_face_table5_runs_on_a_talking_clip(realdata, capsys):
    """``eval face-table5`` (Table 5: landmark and photometric error of fit, FaceNet, FaceNet on the tight
    box, net+fit) on two frames of d0: every mode reports finite figures, and the fit, which sees the
    landmarks, is closer to them than FaceNet on a coarse box."""
    from model_runtime.cli.main import main

    clip = realdata / "LivePortrait/assets/examples/driving/d0.mp4"
    assert main(["eval", "face-table5", str(clip), "--every", "10", "--limit", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    modes = out["overall"]
    assert set(modes) == {"fit", "net", "net-T", "net+fit"}
    for m in modes.values():
        assert m["frames"] == 2 and np.isfinite([m["landmark_pct"], m["photometric"]]).all()
    assert modes["fit"]["landmark_pct"] < modes["net"]["landmark_pct"]


def test_training_on_a_carried_cache_subset_needs_no_opencv_or_mediapipe(real_crops, tmp_path):
    """The GPU machine's FaceNet burst (scripts/gpu_facenet.sh): ``--subset-cache`` keeps a share of each
    source, evenly spread (the held-out source at most 60 faces), and training on that folder runs with
    OpenCV, scipy and MediaPipe made unimportable (a subprocess; CPU, two steps, from the shipped weights)."""
    from model_runtime.cli.train_facenet import DEFAULT_HOLDOUT

    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("video_a", "video_b", DEFAULT_HOLDOUT[0]):          # three sources of the three real faces
        np.savez(cache / f"{name}.npz", **real_crops)
    (cache / "summary.json").write_text(json.dumps({"sources": {}}))
    sub = tmp_path / "sub"
    code = ("import sys\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from model_runtime.cli.main import main\n"
            f"sys.exit(main({['train', 'facenet', '--cache-dir', str(cache), '--subset-cache', str(sub), '--subset-faces', '4']!r}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    kept = {p.stem: len(np.load(p)["crop"]) for p in sub.glob("*.npz")}
    assert kept == {"video_a": 2, "video_b": 2, DEFAULT_HOLDOUT[0]: 3} and (sub / "summary.json").is_file()
    args = ["train", "facenet", "--cache-dir", str(sub), "--data", str(tmp_path / "no_realdata"), "--device", "cpu",
            "--steps", "2", "--batch", "2", "--threads", "1", "--run-dir", str(tmp_path / "run"),
            "--init-from", str(weights_path(load_face_model())), "--export-dir", str(tmp_path / "export")]
    code = ("import sys\n"
            "for m in ('cv2', 'scipy', 'mediapipe'):\n"
            "    sys.modules[m] = None          # not on the device\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from model_runtime.cli.main import main\n"
            f"sys.exit(main({args!r}))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 training faces" in r.stderr and (tmp_path / "export" / "facenet_builtin.pt").is_file()


# ----------------------------------------------------------------------------- the profile expert
def test_profile_weight_is_a_smooth_gate_on_absolute_yaw():
    from model_runtime.face.facenet import profile_weight, yaw_deg
    from model_runtime.face.facenet_synth import _rotation

    yaws = np.array([-80.0, -47.0, -39.5, -32.0, 0.0, 20.0, 32.0, 39.5, 47.0, 89.0])
    R = np.stack([_rotation(np.radians(y), 0.0, 0.0) for y in yaws])
    assert np.allclose(np.abs(yaw_deg(R)), np.abs(yaws), atol=1e-9)
    assert np.allclose(yaw_deg(np.diag([1.0, -1.0, -1.0])), 0.0)
    w = profile_weight(yaw_deg(R), (32.0, 47.0))
    assert np.array_equal(w[[0, 1, 8, 9]], [1, 1, 1, 1]) and np.array_equal(w[[3, 4, 5, 6]], [0, 0, 0, 0])
    assert 0.0 < w[2] < 1.0 and np.isclose(w[2], w[7])           # symmetric in the sign of yaw
    t = np.linspace(0, 90, 181)
    assert np.all(np.diff(profile_weight(t, (32.0, 47.0))) >= 0)          # monotonic, no jump
    assert np.max(np.diff(profile_weight(t, (32.0, 47.0)))) < 0.1


@pytest.mark.parametrize("patch, field", [
    ({"expert": "profile", "gate_yaw_deg": [50.0, 40.0]}, "gate_yaw_deg"),
    ({"expert": "profile", "gate_yaw_deg": [30.0, float("nan")]}, "gate_yaw_deg"),
    ({"expert": "profile", "gate_yaw_deg": "32-47"}, "gate_yaw_deg"),
    ({"gate_yaw_deg": [32.0, 47.0]}, "expert"),
])
def test_a_bad_profile_expert_file_is_a_one_line_error_naming_the_field(tmp_path, face_model, patch, field):
    main = _write_weights(tmp_path, face_model)
    side = tmp_path / "side"
    expert = _write_weights(side, face_model, patch)
    beside = main.with_name(main.stem + "_profile.pt")
    expert.rename(beside)
    expert.with_suffix(".json").rename(beside.with_suffix(".json"))
    with pytest.raises(ModelFileError) as e:
        FaceNet(face_model, weights=main)                   # found beside the main weights
    assert e.value.field == field and "\n" not in str(e.value) and beside.with_suffix(".json").name in str(e.value)
    assert FaceNet(face_model, weights=main, profile=False).profile is None


def _render_row(m, corr, yaw_deg_: float, seed: int) -> dict:
    """One synthetic face (face/facenet_synth.py, noise background) turned by ``yaw_deg_``, pitch and roll 0,
    as a cache row: the stored crop, its 468 exact landmarks (crop px), and the crop's camera."""
    from model_runtime.face.facenet_synth import _rotation, render_sample, sample_parameters, smooth_noise

    rng = np.random.default_rng(seed)
    while True:
        p = sample_parameters(m, rng)
        R = _rotation(np.radians(yaw_deg_), 0.0, 0.0)
        centre = np.asarray(m.mean_shape, np.float64).mean(0)
        p.update(rotation=R, translation=np.array([0.0, 0.0, 0.8]) - R @ centre, yaw_deg=np.float64(yaw_deg_))
        row = render_sample(m, corr, p, smooth_noise(rng, 320), rng)
        if row is not None:
            A, K = row["A"].astype(np.float64), row["K"].astype(np.float64)
            Kc = np.eye(3)
            Kc[0, 0], Kc[1, 1] = A[0, 0] * K[0, 0], A[1, 1] * K[1, 1]
            Kc[:2, 2] = A[:, :2] @ K[:2, 2] + A[:, 2]
            row["K_crop"] = Kc
            return row


def _landmark_error(net: FaceNet, row: dict) -> tuple[float, float, float]:
    """(landmark error / face size, |yaw| of the predicted pose, the expert's weight) of ``net`` on ``row``."""
    from model_runtime.face.facenet import yaw_deg
    from model_runtime.face.render import project
    from model_runtime.models.face_model import face_geometry

    lm = row["landmarks"].astype(np.float64)
    box = np.concatenate([lm.min(0), lm.max(0) - lm.min(0)])[None]
    pred, R, t = net.predict(row["crop"], box, row["K_crop"])
    m = net.model
    verts = face_geometry(m.mean_shape, m.id_basis, m.exp_basis, pred.identity, pred.expression)[0]
    px = net.corr.points(project(verts @ R[0].T + t[0], row["K_crop"])[None])[0]
    size = float(np.sqrt(np.prod(lm.max(0) - lm.min(0))))
    w = 0.0 if pred.profile_weight is None else float(pred.profile_weight[0])
    return float(np.linalg.norm(px - lm, axis=-1).mean() / size), float(abs(yaw_deg(R[0]))), w


def test_the_shipped_profile_expert_takes_turned_faces_and_leaves_frontal_ones(face_model):
    """Renders of the face model (exact landmarks; not a training render: another random stream): a frontal
    face gets the main network's output bit for bit; faces turned 70 deg go to the expert, whose pose is
    turned as far and whose landmarks are closer than the main network's alone."""
    from model_runtime.face.correspondence import correspondence_for

    both, main = FaceNet(face_model), FaceNet(face_model, profile=False)
    assert both.profile is not None and both.gate is not None and main.profile is None
    lo, hi = both.gate
    assert 20.0 < lo < hi < 70.0                          # where the real training faces thin out
    corr = correspondence_for(face_model)
    front = _render_row(face_model, corr, 0.0, 11)
    box = np.concatenate([front["landmarks"].min(0), np.ptp(front["landmarks"], 0)])[None]
    a, b = both.predict(front["crop"], box, front["K_crop"])[0], main.predict(front["crop"], box, front["K_crop"])[0]
    assert float(a.profile_weight[0]) == 0.0 and b.profile_weight is None
    for k in ("identity", "expression", "albedo", "sh", "rot6d", "uv", "log_scale"):
        assert np.array_equal(getattr(a, k), getattr(b, k)), k
    errs = []
    for yaw, seed in ((70.0, 12), (-70.0, 13), (75.0, 14), (-65.0, 15)):
        row = _render_row(face_model, corr, yaw, seed)
        e_both, yaw_both, w = _landmark_error(both, row)
        e_main, yaw_main, _ = _landmark_error(main, row)
        assert w == 1.0 and yaw_both > hi, (yaw, yaw_both)
        errs.append((e_both, e_main))
    errs = np.array(errs)
    assert errs[:, 0].mean() < 0.7 * errs[:, 1].mean(), errs


def test_profile_gate_is_read_from_the_real_training_faces():
    from model_runtime.cli.train_facenet import profile_gate
    from model_runtime.face.facenet_synth import _rotation

    rng = np.random.default_rng(0)
    yaws = np.concatenate([rng.uniform(-20, 20, 950), rng.uniform(40, 50, 50), rng.uniform(80, 90, 300)])
    source = np.concatenate([np.zeros(1000, int), np.full(300, 2)])       # 2: the synthetic source
    source[:10] = 1                                                        # 1: held out
    data = {"rotation": np.stack([_rotation(np.radians(y), 0.0, 0.0) for y in yaws]), "source": source}
    lo, hi = profile_gate(data, ["real", "held", "synth_faces"], [1])
    real = np.abs(yaws[10:1000])
    assert np.isclose(lo, np.percentile(real, 95), atol=0.06) and np.isclose(hi, np.percentile(real, 99), atol=0.06)
    assert 19.0 < lo < hi < 50.0


def test_capture_options_choose_facenet_files(face_model, tmp_path):
    """``--facenet-weights`` / ``--facenet-profile`` reach the face stage: 'none' switches the expert off, a
    candidate without one runs alone, a missing file is a one-line error naming it."""
    from model_runtime.core.options import CaptureOptions, OptionError
    from model_runtime.face.stage_factory import make_face_stage

    assert make_face_stage("net", face_model).net.profile is not None
    assert make_face_stage("net", face_model, facenet_profile="none").net.profile is None
    cand = _write_weights(tmp_path, face_model)
    assert make_face_stage("net+fit", face_model, facenet_weights=str(cand)).net.profile is None
    with pytest.raises(ModelFileError) as e:
        make_face_stage("net", face_model, facenet_profile=str(tmp_path / "nope_profile.pt"))
    assert "nope_profile" in str(e.value) and "\n" not in str(e.value)
    assert CaptureOptions(facenet_profile="none").facenet_profile == "none"
    with pytest.raises(OptionError):
        CaptureOptions(facenet_weights="")
