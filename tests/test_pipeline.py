"""Capture pipeline: Eq. 14 translation, intrinsics, filters, hand sides, shape, and the whole capture."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from model_runtime.core import rotations as R
from model_runtime.core.errors import InputMissingError, ModelFileError
from model_runtime.core.lbs import forward_kinematics
from model_runtime.capture.filters import GapFiller, OneEuroFilter, RotationFilter, SmoothingConfig, slerp
from model_runtime.capture.tracking import HandSideTracker, ShapeEstimator, hand_swap_mask
from model_runtime.capture.translation import (
    TranslationSolver, intrinsics_from_fov, load_calibration, solve_parent_depth, weighted_median,
)
from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES, JOINT_NAMES, PARENTS

S20 = "LivePortrait/assets/examples/source/s20.mp4"     # upper body, both hands visible


# --------------------------------------------------------------------------- helpers
def toy_skeleton(rng: np.random.Generator, B: int) -> np.ndarray:
    """Posed SMPL-H-tree joints ``(B, 52, 3)`` in camera axes: a person standing upright
    (head up = -y), bone offsets of plausible size, random limb rotations."""
    rest = np.zeros((52, 3))
    offsets = rng.normal(scale=0.12, size=(52, 3))
    for j in range(1, 52):
        rest[j] = rest[PARENTS[j]] + offsets[j]
    names = {n: i for i, n in enumerate(JOINT_NAMES)}
    rest[names["left_hip"]], rest[names["right_hip"]] = [0.09, -0.08, 0.0], [-0.09, -0.08, 0.0]
    rest[names["spine1"]] = [0.0, 0.1, 0.0]
    rest[names["left_shoulder"]], rest[names["right_shoulder"]] = [0.18, 0.45, 0.0], [-0.18, 0.45, 0.0]
    rot = R.axis_angle_to_matrix(rng.normal(scale=0.3, size=(B, 52, 3)))
    flip = np.diag([1.0, -1.0, -1.0])            # model Y-up/+Z-facing -> camera y-down, facing the camera
    rot[:, 0] = flip @ rot[:, 0]
    joints, _ = forward_kinematics(rot, np.broadcast_to(rest, (B, 52, 3)).copy(), PARENTS)
    return joints


def project(X: np.ndarray, K: np.ndarray) -> np.ndarray:
    uvw = X @ K.T
    return uvw[..., :2] / uvw[..., 2:]


BODY_ROWS = np.array([JOINT_NAMES.index(n) if n in JOINT_NAMES else 0 for n in BODY_KEYPOINT_NAMES])


def keypoints_from(joints_cam: np.ndarray, K: np.ndarray, noise_px: float = 0.0, rng=None) -> np.ndarray:
    uv = project(joints_cam[:, BODY_ROWS], K)
    if noise_px:
        uv = uv + rng.normal(scale=noise_px, size=uv.shape)
    return np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], -1)


# --------------------------------------------------------------------------- intrinsics
def test_intrinsics_from_fov():
    K = intrinsics_from_fov((640, 480), 60.0)
    assert K[0, 2] == 320 and K[1, 2] == 240 and K[0, 0] == K[1, 1]
    # the longer side spans exactly the field of view
    assert 2 * math.degrees(math.atan(320 / K[0, 0])) == pytest.approx(60.0)
    portrait = intrinsics_from_fov((480, 640), 60.0)
    assert portrait[0, 0] == pytest.approx(K[0, 0])
    with pytest.raises(ValueError, match="fov"):
        intrinsics_from_fov((640, 480), 0.0)


def test_calibration_files(tmp_path):
    K = np.array([[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]])
    (tmp_path / "k.json").write_text(json.dumps({"K": K.tolist(), "image_size": [640, 480]}))
    np.testing.assert_allclose(load_calibration(tmp_path / "k.json", (640, 480)), K)
    # same aspect ratio, half resolution: K is rescaled
    np.testing.assert_allclose(load_calibration(tmp_path / "k.json", (320, 240)), np.diag([0.5, 0.5, 1]) @ K)
    (tmp_path / "f.json").write_text(json.dumps({"fx": 500, "fy": 510, "cx": 320, "cy": 240}))
    np.testing.assert_allclose(load_calibration(tmp_path / "f.json", (640, 480)), K)
    fs = cv2.FileStorage(str(tmp_path / "cam.yml"), cv2.FILE_STORAGE_WRITE)
    fs.write("camera_matrix", K)
    fs.write("image_width", 640)
    fs.write("image_height", 480)
    fs.release()
    np.testing.assert_allclose(load_calibration(tmp_path / "cam.yml", (640, 480)), K)
    np.savez(tmp_path / "cap.npz", camera_K=K.astype(np.float32), image_size=np.array([640, 480]))
    np.testing.assert_allclose(load_calibration(tmp_path / "cap.npz", (640, 480)), K, rtol=1e-6)
    with pytest.raises(ModelFileError, match="k.json: field 'image_size'.*aspect"):
        load_calibration(tmp_path / "k.json", (640, 640))
    (tmp_path / "bad.json").write_text(json.dumps({"K": [[1, 2], [3, 4]]}))
    with pytest.raises(ModelFileError, match="bad.json: field 'K'"):
        load_calibration(tmp_path / "bad.json", (640, 480))
    with pytest.raises(InputMissingError, match="missing.json"):
        load_calibration(tmp_path / "missing.json", (640, 480))


# --------------------------------------------------------------------------- Eq. 14
def test_eq14_recovers_depth_exactly():
    rng = np.random.default_rng(1)
    K = intrinsics_from_fov((1280, 720), 55.0)
    P = rng.uniform([-1, -1, 2], [1, 1, 8], size=(200, 3))
    C = P + rng.normal(scale=0.3, size=(200, 3))
    z, q = solve_parent_depth(project(P, K), project(C, K), C[:, 2] - P[:, 2], np.linalg.norm(C - P, axis=-1), K,
                              z_prior=P[:, 2])
    good = q > 0
    assert good.mean() > 0.95
    np.testing.assert_allclose(z[good], P[good, 2], rtol=1e-6)


def test_eq14_negative_discriminant_gives_least_squares_depth():
    K = intrinsics_from_fov((640, 480))
    # 2D bone too long for a 0.1 m bone whose child is 0.5 m nearer: no exact root
    z, q = solve_parent_depth(np.array([[500.0, 240]]), np.array([[600.0, 240]]), np.array([-0.5]),
                              np.array([0.1]), K)
    assert q[0] == 0.5 and np.isfinite(z[0]) and z[0] > 0


def test_translation_from_torso_bones_exact_and_robust():
    rng = np.random.default_rng(2)
    B = 64
    joints = toy_skeleton(rng, B)
    transl = rng.uniform([-0.5, -0.3, 2.5], [0.5, 0.3, 6.0], size=(B, 3))
    K = intrinsics_from_fov((1280, 720), 60.0)
    kp = keypoints_from(joints + transl[:, None], K)
    solver = TranslationSolver(K)
    t, ok = solver.solve(kp, joints)
    assert ok.all()
    np.testing.assert_allclose(t, transl, atol=1e-6)
    # 2 px noise plus one grossly wrong shoulder: depth error stays small (median over bones)
    noisy = keypoints_from(joints + transl[:, None], K, noise_px=2.0, rng=rng)
    noisy[:, BODY_KEYPOINT_NAMES.index("left_shoulder"), :2] += 80.0
    t, ok = solver.solve(noisy, joints)
    assert ok.all()
    rel = np.abs(t[:, 2] - transl[:, 2]) / transl[:, 2]
    assert np.median(rel) < 0.05 and rel.max() < 0.25


def test_translation_falls_back_to_limbs_and_reports_failure():
    rng = np.random.default_rng(3)
    joints = toy_skeleton(rng, 2)
    transl = np.array([[0.0, 0.0, 3.0], [0.2, 0.1, 4.0]])
    K = intrinsics_from_fov((640, 480))
    kp = keypoints_from(joints + transl[:, None], K)
    hips = [BODY_KEYPOINT_NAMES.index(n) for n in ("left_hip", "right_hip")]
    kp[0, hips, 2] = 0.0            # frame 0: no hip -> no torso bone except the shoulder width
    kp[0, BODY_KEYPOINT_NAMES.index("right_shoulder"), 2] = 0.0   # ... nor that one
    kp[1, :, 2] = 0.0               # frame 1: nothing visible
    t, ok = TranslationSolver(K).solve(kp, joints)
    assert ok.tolist() == [True, False]
    np.testing.assert_allclose(t[0], transl[0], atol=1e-6)


def test_weighted_median():
    v = np.array([[1.0, 2.0, 100.0], [5.0, 6.0, 7.0]])
    w = np.array([[1.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
    m = weighted_median(v, w)
    assert m[0] == 2.0 and np.isnan(m[1])


# --------------------------------------------------------------------------- filters
def test_one_euro_smooths_jitter_and_follows_steps():
    rng = np.random.default_rng(4)
    t = np.arange(300) / 30.0
    truth = np.where(t < 5, 0.0, 1.0)
    x = truth + rng.normal(scale=0.02, size=t.shape)
    f = OneEuroFilter(SmoothingConfig(min_cutoff=1.0, beta=2.0))
    y = np.array([f(np.array([xi]), ti)[0] for xi, ti in zip(x, t)])
    still = slice(30, 140)
    assert np.std(y[still] - truth[still]) < 0.5 * np.std(x[still] - truth[still])
    assert abs(y[170] - 1.0) < 0.05                  # caught up within 0.7 s of the step
    off = OneEuroFilter(SmoothingConfig(enabled=False))
    assert off(np.array([3.0]), 0.0)[0] == 3.0 and off(np.array([4.0]), 0.1)[0] == 4.0


def test_rotation_filter_keeps_quaternion_continuity():
    # a rotation passing through 180 degrees: its w>=0 quaternion flips sign there
    angles = np.linspace(2.6, 3.6, 40)
    rots = R.axis_angle_to_matrix(np.stack([np.zeros_like(angles), angles, np.zeros_like(angles)], -1))
    f = RotationFilter(SmoothingConfig(min_cutoff=5.0, beta=1.0))
    out = np.stack([f(r[None], i / 30.0)[0] for i, r in enumerate(rots)])
    ang = R.geodesic_angle(out, rots)
    assert ang.max() < 0.2                           # no flip to the antipode, no big lag
    q = R.matrix_to_quat_wxyz(rots)
    assert ((q[1:] * q[:-1]).sum(-1) < 0).any()      # the raw quaternions do flip
    qc = R.quat_continuity(q)
    assert ((qc[1:] * qc[:-1]).sum(-1) > 0).all()


def test_slerp_midpoint_and_shortest_path():
    q0 = np.array([1.0, 0, 0, 0])
    q1 = -R.matrix_to_quat_wxyz(R.axis_angle_to_matrix(np.array([0.0, 0, 1.0])))   # antipodal sign
    mid = slerp(q0, q1, 0.5)
    np.testing.assert_allclose(R.geodesic_angle(R.quat_wxyz_to_matrix(mid), np.eye(3)), 0.5, atol=1e-9)


def _rec(t: float, valid: bool, angle: float, x: float) -> dict:
    q = R.matrix_to_quat_wxyz(R.axis_angle_to_matrix(np.array([[0.0, angle, 0.0]])))
    return dict(time=t, valid=valid, quat=q, transl=np.array([x, 0.0, 3.0]), raw=x)


def test_gap_filler_interpolate_and_hold():
    seq = [_rec(0, True, 0.0, 0.0), _rec(1, False, 9, 9), _rec(2, False, 9, 9), _rec(3, True, 0.3, 3.0)]
    fill = GapFiller("interpolate", quat_keys=("quat",), linear_keys=("transl",))
    out = []
    for r in seq:
        out += fill.push(dict(r))
        if r is seq[1]:
            assert out == [seq[0]] or len(out) == 1 and fill.pending == 1
    out += fill.flush()
    assert [o["time"] for o in out] == [0, 1, 2, 3]
    np.testing.assert_allclose([o["transl"][0] for o in out], [0, 1, 2, 3])
    angles = [float(R.geodesic_angle(R.quat_wxyz_to_matrix(o["quat"]), np.eye(3))[0]) for o in out]
    np.testing.assert_allclose(angles, [0, 0.1, 0.2, 0.3], atol=1e-9)
    assert [o["raw"] for o in out] == [0, 9, 9, 3.0]             # pass-through keys untouched

    hold = GapFiller("hold", quat_keys=("quat",), linear_keys=("transl",))
    out = sum((hold.push(dict(r)) for r in seq), []) + hold.flush()
    np.testing.assert_allclose([o["transl"][0] for o in out], [0, 0, 0, 3])


def test_gap_filler_leading_trailing_and_long_gaps():
    fill = GapFiller("interpolate", quat_keys=("quat",), linear_keys=("transl",), max_gap=2)
    out = fill.push(_rec(0, False, 9, 9)) + fill.push(_rec(1, True, 0.0, 1.0))
    np.testing.assert_allclose([o["transl"][0] for o in out], [1, 1])       # leading gap: first valid
    out = fill.push(_rec(2, False, 9, 9)) + fill.push(_rec(3, False, 9, 9))
    assert out == [] and fill.pending == 2
    out = fill.push(_rec(4, False, 9, 9))                                  # gap > max_gap: held
    np.testing.assert_allclose([o["transl"][0] for o in out], [1, 1, 1])
    out = fill.push(_rec(5, False, 9, 9)) + fill.flush()                   # trailing gap: held
    np.testing.assert_allclose([o["transl"][0] for o in out], [1])
    with pytest.raises(ValueError, match="fill mode"):
        GapFiller("zero")


def test_gap_filler_live_never_waits():
    live = GapFiller("interpolate", quat_keys=("quat",), linear_keys=("transl",), lookahead=False)
    assert len(live.push(_rec(0, False, 9, 9))) == 1                      # nothing to hold yet: as is
    assert len(live.push(_rec(1, True, 0.0, 1.0))) == 1
    out = live.push(_rec(2, False, 9, 9))                                  # held at once
    assert len(out) == 1 and out[0]["transl"][0] == 1.0 and live.pending == 0


def test_capture_options_from_protocol_mapping():
    from model_runtime.capture.pipeline import CaptureOptions

    o = CaptureOptions.from_mapping({"start": 5, "smoothing": {"min_cutoff": 2.0, "beta": 0.1}, "fill": "hold"})
    assert o.start == 5 and o.smoothing.min_cutoff == 2.0 and o.fill == "hold"
    assert not CaptureOptions.from_mapping({"smoothing": False}).smoothing.enabled
    with pytest.raises(ValueError, match="colour"):
        CaptureOptions.from_mapping({"colour": 1})
    with pytest.raises(ValueError, match="fill"):
        CaptureOptions.from_mapping({"fill": "zero"})


# --------------------------------------------------------------------------- hands and shape
def test_hand_swap_mask_synthetic():
    hands = np.zeros((3, 2, 21, 3))
    hands[:, 0, 0, :2], hands[:, 1, 0, :2] = [100, 200], [400, 200]
    anchors = np.array([[[100, 210], [400, 190]], [[400, 200], [100, 200]], [[400, 200], [100, 200]]], float)
    conf = np.array([[1, 1], [1, 1], [1, 0]], float)   # frame 2: only the "left" hand, near the right wrist
    swap = hand_swap_mask(hands, conf, anchors, np.ones((3, 2), bool))
    assert swap.tolist() == [False, True, True]
    assert not hand_swap_mask(hands, conf, anchors, np.zeros((3, 2), bool)).any()   # no evidence


@pytest.fixture(scope="module")
def s20_detection(realdata):
    from model_runtime.detectors import make_detector
    from model_runtime.capture.sources import open_source

    with open_source(realdata / S20, start=60, end=61) as src:
        frame = next(iter(src))
    det = make_detector("mediapipe")
    try:
        d = det.detect(frame.image)
    finally:
        det.close()
    if not (d.person and (d.hands_conf > 0).all()):
        pytest.skip("MediaPipe did not find both hands on the test frame")
    return d


def test_hand_side_tracker_on_real_detection(s20_detection):
    d = s20_detection
    tracker = HandSideTracker()
    h2, h3, hc, swapped = tracker(d.body_2d, d.hands_2d, d.hands_3d, d.hands_conf)
    assert not swapped                                   # MediaPipe got the sides right here
    h2s, h3s, hcs, swapped = tracker(d.body_2d, d.hands_2d[::-1].copy(), d.hands_3d[::-1].copy(), d.hands_conf)
    assert swapped and tracker.swaps == 1
    np.testing.assert_array_equal(h2s, d.hands_2d)
    np.testing.assert_array_equal(h3s, d.hands_3d)
    # without body wrists the previous frame's hand positions decide
    body = d.body_2d.copy()
    body[:, 2] = 0.0
    _, _, _, swapped = tracker(body, d.hands_2d[::-1].copy(), d.hands_3d[::-1].copy(), d.hands_conf)
    assert swapped


def test_shape_estimator_is_robust_and_freezes():
    rng = np.random.default_rng(5)
    est = ShapeEstimator(window=20)
    truth = rng.normal(size=16)
    for i in range(20):
        outlier = i % 5 == 0                          # 20 % of frames wildly off
        est.add(truth + (rng.normal(scale=5, size=16) if outlier else rng.normal(scale=0.01, size=16)),
                1.0 + (3.0 if outlier else 0.0), weight=0.9)
    assert est.frozen
    np.testing.assert_allclose(est.betas, truth, atol=0.05)
    assert est.scale == pytest.approx(1.0)
    est.add(truth + 10, 5.0, 1.0)                     # ignored once frozen
    np.testing.assert_allclose(est.betas, truth, atol=0.05)
    empty = ShapeEstimator(window=5)
    empty.freeze()
    assert empty.scale == 1.0 and not empty.betas.any()


# --------------------------------------------------------------------------- the capture command
TENNIS = "GVHMR/docs/example_video/tennis.mp4"     # full body, 812x720, 29.83 fps


def _cli(*argv: str) -> int:
    from model_runtime.cli.main import main

    return main(list(argv))


def test_capture_cli_bad_input_exit_codes(tmp_path, capsys):
    from model_runtime.core.errors import EXIT_INPUT_MISSING, EXIT_INPUT_UNREADABLE

    out = str(tmp_path / "o.npz")
    assert _cli("capture", str(tmp_path / "missing.mp4"), "-o", out, "--quiet") == EXIT_INPUT_MISSING
    assert "missing.mp4: no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _cli("capture", str(tmp_path / "empty"), "-o", out, "--quiet") == EXIT_INPUT_UNREADABLE
    assert "contains no images" in capsys.readouterr().err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 30_000, dtype=np.uint8).tobytes())
    assert _cli("capture", str(junk), "-o", out, "--quiet") == EXIT_INPUT_UNREADABLE
    assert "junk.mp4" in capsys.readouterr().err
    assert _cli("capture", "99", "-o", out, "--quiet") == EXIT_INPUT_MISSING
    assert "camera 99" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


@pytest.fixture(scope="module")
def pipeline_cpu():
    """The real components (MediaPipe, IK nets, built-in body), no face, shared by the tests below."""
    from model_runtime.capture.pipeline import CaptureOptions, build_pipeline

    pipe = build_pipeline(CaptureOptions(device="cpu", face=False, shape_window=8))
    yield pipe
    pipe.detector.close()


def test_capture_real_video_lands_on_the_person(pipeline_cpu, realdata, tmp_path):
    """Model joints posed with pose_6d, scaled, translated and projected with camera_K land on the
    detected 2D keypoints: the root rotation maps the model into the camera frame (y down)."""
    from model_runtime.core.capture_file import REQUIRED_KEYS, load_capture
    from model_runtime.capture.sources import open_source

    with open_source(realdata / TENNIS, start=40, end=56) as src:
        res = pipeline_cpu.run(src, tmp_path / "t.npz")
    assert res.frames == 16 and res.valid_frames == 16
    cap = load_capture(res.output)
    assert set(REQUIRED_KEYS) <= set(cap.data)
    assert cap["keypoints_2d"].shape == (16, 66, 3) and cap["image_size"].tolist() == [812, 720]
    body = pipeline_cpu.body
    rot = R.rot6d_to_matrix(cap["pose_6d"].astype(np.float64))
    np.testing.assert_allclose(R.matrix_to_rot6d(rot), cap["pose_6d"], atol=1e-5)   # orthonormal 6D
    betas = np.broadcast_to(cap["betas"], (16, 16)).astype(np.float64)
    _, joints, _ = body.forward(betas, rot, transl=cap["transl"].astype(np.float64),
                                scale=np.full(16, float(cap["scale"])))
    assert (joints[:, 0, 2] > 0.5).all() and (joints[:, 0, 2] < 30).all()          # in front of the camera
    uv = project(joints[:, BODY_ROWS[:15]], cap["camera_K"].astype(np.float64))
    kp = cap["keypoints_2d"][:, :15]
    torso = [BODY_KEYPOINT_NAMES.index(n) for n in ("left_hip", "right_hip", "left_shoulder", "right_shoulder")]
    err = np.linalg.norm(uv[:, torso] - kp[:, torso, :2], axis=-1)
    height_px = np.ptp(kp[..., 1], axis=1).mean()
    assert np.median(err) < 0.08 * height_px, (np.median(err), height_px)
    # head above pelvis in the image (camera y down): not upside down
    head = BODY_KEYPOINT_NAMES.index("head")
    assert (uv[:, head, 1] < uv[:, 0, 1]).all()


def test_no_person_keeps_file_and_exit_code(pipeline_cpu, tmp_path):
    from model_runtime.core.capture_file import load_capture
    from model_runtime.core.errors import EXIT_NO_PERSON, NoPersonError
    from model_runtime.capture.sources import open_source

    blank = tmp_path / "blank.mp4"
    vw = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(8):
        img = np.full((120, 160, 3), 90, np.uint8)
        cv2.rectangle(img, (10 + 5 * i, 40), (40 + 5 * i, 80), (30, 160, 200), -1)   # a moving box, no person
        vw.write(img)
    vw.release()
    with open_source(blank) as src, pytest.raises(NoPersonError, match=r"blank\.mp4.*no person.*8 frames") as e:
        pipeline_cpu.run(src, tmp_path / "b.npz")
    assert e.value.exit_code == EXIT_NO_PERSON and e.value.partial_output == tmp_path / "b.npz"
    cap = load_capture(tmp_path / "b.npz")
    assert cap.num_frames == 8 and not cap["valid"].any()


def test_cancel_and_source_loss_keep_finished_frames(pipeline_cpu, realdata, tmp_path):
    import threading

    from model_runtime.core.capture_file import load_capture
    from model_runtime.core.errors import CancelledError
    from model_runtime.capture.sources import open_source

    cancel = threading.Event()

    def stop_after_6(done, total, fps):
        if done >= 6:
            cancel.set()

    with open_source(realdata / TENNIS, start=0, end=200) as src, pytest.raises(CancelledError) as e:
        pipeline_cpu.run(src, tmp_path / "c.npz", cancel=cancel, on_progress=stop_after_6)
    assert e.value.partial_output == tmp_path / "c.npz" and "kept in" in str(e.value)
    cap = load_capture(tmp_path / "c.npz")
    assert 6 <= cap.num_frames < 200 and cap["valid"].all()
    assert not (tmp_path / "c.npz.partial").exists()


def test_source_lost_mid_stream_keeps_finished_frames(pipeline_cpu, realdata, tmp_path):
    """A real clip re-encoded as MJPG whose second half is destroyed: SourceLostError (exit 7)
    names the file and frame; the frames decoded before are in the kept capture."""
    from model_runtime.core.capture_file import load_capture
    from model_runtime.core.errors import EXIT_SOURCE_LOST, SourceLostError
    from model_runtime.capture.sources import open_source

    avi = tmp_path / "clip.avi"
    with open_source(realdata / TENNIS, start=40, end=64) as src:
        vw = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), src.fps, src.image_size)
        for f in src:
            vw.write(f.image)
        vw.release()
    data = bytearray(avi.read_bytes())
    movi, idx1 = data.find(b"movi"), data.rfind(b"idx1")
    mid = movi + (idx1 - movi) // 2
    data[mid:idx1] = bytes(idx1 - mid)
    avi.write_bytes(bytes(data))
    with open_source(avi) as src, pytest.raises(SourceLostError, match=r"clip\.avi: decoding stopped at frame") as e:
        pipeline_cpu.run(src, tmp_path / "lost.npz")
    assert e.value.exit_code == EXIT_SOURCE_LOST and "kept in" in str(e.value)
    cap = load_capture(e.value.partial_output)
    assert 5 <= cap.num_frames < 24 and cap["valid"].mean() > 0.8


def test_capture_with_face_every_frame(realdata, tmp_path):
    """Face fitting inside the pipeline on a talking-head clip: per-frame expression and SH,
    per-clip identity and albedo in the file."""
    from model_runtime.core.capture_file import load_capture
    from model_runtime.capture.pipeline import CaptureOptions, build_pipeline
    from model_runtime.capture.sources import open_source

    pipe = build_pipeline(CaptureOptions(device="cpu", face=True, face_every=1, shape_window=4, hands=False))
    try:
        with open_source(realdata / "SadTalker/examples/ref_video/WDA_AlexandriaOcasioCortez_000.mp4",
                         start=20, end=26) as src:
            res = pipe.run(src, tmp_path / "f.npz")
    finally:
        pipe.detector.close()
    cap = load_capture(res.output)
    E = len(cap["expression_names"])
    assert E == 52 and "jawOpen" in cap["expression_names"].tolist()
    assert res.face_fits == 6 and cap["face_expression"].shape == (6, E)
    expr = cap["face_expression"]
    assert np.isfinite(expr).all() and (expr >= -1e-6).all() and (expr <= 1 + 1e-6).all()
    assert np.abs(np.diff(expr, axis=0)).max() > 1e-4          # expressions change over frames
    assert np.abs(cap["face_identity"]).sum() > 0 and np.abs(cap["face_albedo"]).sum() > 0
    assert np.isfinite(cap["face_sh"]).all() and np.abs(cap["face_sh"]).sum(-1).min() > 0


def test_capture_talking_face_expressions_follow_the_lips(realdata, tmp_path):
    """Default (adaptive) face mode on a real talking-face clip whose lips open: every frame gets
    its own tracked expression (not one fit held over the clip), and jawOpen follows the inner-lip
    gap that MediaPipe's landmarks show."""
    from model_runtime.core.capture_file import load_capture
    from model_runtime.capture.pipeline import CaptureOptions, build_pipeline
    from model_runtime.capture.sources import open_source

    clip = realdata / "LivePortrait/assets/examples/driving/d0.mp4"
    pipe = build_pipeline(CaptureOptions(device="cpu", face=True, shape_window=4, hands=False))
    try:
        with open_source(clip, start=8, end=30) as src:
            res = pipe.run(src, tmp_path / "d0.npz")
        gaps = []
        with open_source(clip, start=8, end=30) as src:       # the lip gap, straight from the landmarks
            for f in src:
                d = pipe.detector.detect(f.image, timestamp_ms=int(round(1000 * f.time)))
                lm = d.face_landmarks
                gaps.append(np.linalg.norm(lm[13, :2] - lm[14, :2]) / np.sqrt(d.face_box[2] * d.face_box[3]))
    finally:
        pipe.detector.close()
    cap = load_capture(res.output)
    expr = cap["face_expression"]
    assert expr.shape == (22, 52) and res.face_fits >= 1 and res.stage_ms["face_track"] > 0
    assert np.isfinite(expr).all() and (expr >= -1e-6).all() and (expr <= 1 + 1e-6).all()
    assert np.abs(np.diff(expr, axis=0)).max(1).min() > 1e-6, "some consecutive frames share one expression"
    jaw = expr[:, cap["expression_names"].tolist().index("jawOpen")]
    assert np.ptp(jaw) > 0.1 and np.corrcoef(jaw, gaps)[0, 1] > 0.8, (jaw.round(2), np.round(gaps, 3))
    assert np.isfinite(cap["face_sh"]).all() and np.abs(cap["face_albedo"]).sum() > 0


def test_batched_translation_equals_frame_by_frame():
    """postprocess.solve_translations_in_order (batched calls with guessed priors) gives exactly what
    solving the frames one after the other with the previous solved depth as prior gives, on real
    MediaPipe detections of samples/demo_clip.mp4 (tests/data/demo_clip_detections.npz; posed
    joints from the shipped IK), with unsolvable frames among them."""
    from pathlib import Path

    from model_runtime.capture.postprocess import solve_translations_in_order
    from model_runtime.ik.inference import IKSolver
    from model_runtime.models.load import load_body_model

    d = np.load(Path(__file__).parent / "data" / "demo_clip_detections.npz")
    ok = d["person"]
    kp2d, kp3d = d["body_2d"][ok].astype(np.float64), d["body_3d"][ok]
    body = load_body_model()
    out = IKSolver("cpu", body_model=body).solve_body(kp3d, kp2d[..., 2])
    rot = np.tile(np.eye(3), (len(kp2d), 52, 1, 1))
    rot[:, :22] = R.rot6d_to_matrix(out["rot6d"].astype(np.float64))
    j_rest = np.stack([body.rest_joints(b) for b in out["betas"].astype(np.float64)])
    joints, _ = forward_kinematics(rot, j_rest, PARENTS)
    joints = joints * out["scale"][:, None, None]
    kp2d[5:8, :, 2] = 0.0                                   # frames without a person: no solution
    solver = TranslationSolver(intrinsics_from_fov(tuple(int(v) for v in d["image_size"]), 60.0))
    for B in (1, 4, 7):
        for last_z in (None, 2.5):
            seq_t, seq_ok, z = [], [], last_z
            for i in range(0, len(kp2d) - len(kp2d) % B):
                if i % B == 0:
                    z_batch_start = z
                t, o = solver.solve(kp2d[i:i + 1], joints[i:i + 1], None if z is None else np.array([z]))
                o = bool(o[0]) and bool(np.isfinite(t[0]).all())
                seq_t.append(t[0]), seq_ok.append(o)
                z = float(t[0, 2]) if o else z
                if i % B == B - 1:
                    got_t, got_ok = solve_translations_in_order(solver, kp2d[i - B + 1:i + 1], joints[i - B + 1:i + 1],
                                                                z_batch_start)
                    assert got_ok.tolist() == seq_ok[-B:]
                    np.testing.assert_array_equal(got_t[got_ok], np.array(seq_t[-B:])[got_ok])
            assert not all(seq_ok) and any(seq_ok)
    # a frame whose roots the prior picks (toy skeleton, 6 px noise): after frame 10 (depth 0.84 m)
    # it differs from what the batch's starting prior (5 m) gives, so one batched pass is not enough
    rng = np.random.default_rng(4)
    joints = toy_skeleton(rng, 40)
    transl = rng.uniform([-0.5, -0.3, 0.8], [0.5, 0.3, 2.0], size=(40, 3))
    K = intrinsics_from_fov((1280, 720), 60.0)
    kp = keypoints_from(joints + transl[:, None], K, noise_px=6.0, rng=rng)
    solver = TranslationSolver(K)
    order = [3, 10, 29, 7]
    first_pass, _ = solver.solve(kp[order], joints[order], np.full(4, 5.0))
    seq, z = [], 5.0
    for i in order:
        t, o = solver.solve(kp[i:i + 1], joints[i:i + 1], np.array([z]))
        assert o[0]
        seq.append(t[0])
        z = float(t[0, 2])
    got, ok = solve_translations_in_order(solver, kp[order], joints[order], 5.0)
    assert ok.all() and (first_pass[2] != seq[2]).any()
    np.testing.assert_array_equal(got, np.array(seq))
