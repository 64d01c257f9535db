"""The image-aligned fit (issue 10): model_runtime/capture/align.py and capture/focal.py.

Synthetic data from the body model itself: a body posed with known rotations is projected with a
known K; the fit starts from a perturbed pose.  Then a capture of the recorded demo-clip
detections with and without the fit.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from model_runtime.capture.align import AlignConfig, ImageAligner, ModelKeypoints
from model_runtime.capture.align_clip import CentredSmoother
from model_runtime.capture.focal import CAMERA_SOURCES, MAX_LOG_F_STD, clip_camera, estimate_focal
from model_runtime.capture.shape_fit import NUM_FIT_BETAS, ShapeFitConfig, fit_clip_shape
from model_runtime.capture.tracking import ShapeEstimator
from model_runtime.core.capture_file import load_capture
from model_runtime.core.options import CaptureOptions
from model_runtime.core.rotations import axis_angle_to_matrix, matrix_to_quat_wxyz, rot6d_to_matrix
from model_runtime.core.skeleton import NUM_BODY_JOINTS, PARENTS
from model_runtime.geometry.camera import intrinsics_from_fov
from model_runtime.models.keypoints import body_keypoints, hand_keypoints, keypoint_vertex_ids
from model_runtime.models.load import load_body_model

SIZE = (1280, 720)
#: priors this weak leave the 2D points to decide (a synthetic body has no detector error)
WEAK = AlignConfig(w_ik=1e-7, w_ik_fingers=1e-7, w_3d=0.0, iterations=15)


@pytest.fixture(scope="module")
def body():
    return load_body_model("builtin")


@pytest.fixture(scope="module")
def kp(body):
    k = ModelKeypoints(body)
    k.set_shape(np.linspace(-1.0, 1.0, 16), 1.05)
    return k


def _poses(B: int, seed: int, spread: float = 0.25) -> np.ndarray:
    """``(B, 52, 3, 3)`` random poses facing the camera (rest faces +Z; the camera looks along +z)."""
    rng = np.random.default_rng(seed)
    aa = rng.normal(0.0, spread, (B, 52, 3))
    aa[:, 0] = np.array([math.pi, 0.0, 0.0]) + rng.normal(0.0, 0.2, (B, 3))
    return axis_angle_to_matrix(aa)


def _project(X: np.ndarray, K: np.ndarray) -> np.ndarray:
    u = X @ K.T
    return u[..., :2] / u[..., 2:]


def _observed(kp, rot, t, K) -> np.ndarray:
    """``(B, 66, 3)`` exact 2D keypoints, confidence 1."""
    _, _, X = kp.pose(rot, t)
    uv = _project(X, K)
    return np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], -1)


def _reprojection(kp, rot, t, K, kp2d) -> np.ndarray:
    _, _, X = kp.pose(rot, t)
    return np.linalg.norm(_project(X, K) - kp2d[..., :2], axis=-1).max(-1)          # (B,) px


def _perturbed(rot, t, seed: int, angle: float = 0.1, shift: float = 0.05):
    rng = np.random.default_rng(seed)
    return (axis_angle_to_matrix(rng.normal(0.0, angle, rot.shape[:2] + (3,))) @ rot,
            t + rng.normal(0.0, shift, t.shape))


def test_model_keypoints_are_the_body_models(body, kp):
    """The fit's 66 keypoints equal the full LBS forward pass's body and hand keypoints."""
    rot, t = _poses(3, 0), np.array([[0.1, 0.2, 3.0]] * 3)
    J, _, X = kp.pose(rot, t)
    v, j, _ = body.forward(np.broadcast_to(kp.betas, (3, 16)), rot, transl=t, scale=np.full(3, kp.scale))
    vids = keypoint_vertex_ids(body)
    ref = np.concatenate([body_keypoints(j, v, vids), hand_keypoints(j, v, vids, "left"),
                          hand_keypoints(j, v, vids, "right")], 1)
    np.testing.assert_allclose(X, ref, atol=1e-5)
    np.testing.assert_allclose(J, j, atol=1e-5)


def test_recovers_a_perturbed_pose(kp):
    """From rotations perturbed by ~6 degrees per joint and 5 cm, the fit lands within a small
    reprojection error on every one of the 66 points."""
    K = intrinsics_from_fov(SIZE, 60.0)
    rot, t = _poses(4, 1), np.array([[0.1, 0.2, 3.0], [-0.3, 0.1, 2.5], [0.0, 0.0, 4.0], [0.2, -0.1, 3.5]])
    kp2d = _observed(kp, rot, t, K)
    rot0, t0 = _perturbed(rot, t, 2)
    before = _reprojection(kp, rot0, t0, K, kp2d)
    res = ImageAligner(kp, K, WEAK).fit(rot0, t0, kp2d)
    after = _reprojection(kp, res.rot, res.transl, K, kp2d)
    assert before.min() > 15.0
    assert after.max() < 0.5, after
    # the default priors pull towards the perturbed IK pose, yet the points move most of the way
    res = ImageAligner(kp, K).fit(rot0, t0, kp2d)
    assert (_reprojection(kp, res.rot, res.transl, K, kp2d) < 0.2 * before).all()


def test_never_increases_the_energy(kp):
    """Steps are accepted only if they lower a frame's energy: with priors, a 3D prior, a temporal
    prior and wild starting points the energy never rises (energy_before is the input's: the
    given values' energy), and a frame at its optimum stays."""
    K = intrinsics_from_fov(SIZE, 50.0)
    rot, t = _poses(6, 3), np.array([[0.0, 0.1, 3.0]] * 6)
    kp2d = _observed(kp, rot, t, K)
    rng = np.random.default_rng(4)
    kp2d[..., :2] += rng.normal(0.0, 3.0, kp2d[..., :2].shape)           # noisy detections
    kp2d[:, 30:40, :2] += 200.0                                           # and outliers
    rot0, t0 = _perturbed(rot, t, 5, angle=0.6, shift=0.5)
    body_3d = kp.pose(rot, t)[2][:, :24]
    al = ImageAligner(kp, K)
    res = al.fit(rot0, t0, kp2d, body_3d, prev_rot=rot, prev_transl=t, prev_ok=np.ones(6, bool),
                 iterations=3)
    assert (res.energy <= res.energy_before).all()
    mild_rot, mild_t = _perturbed(rot, t, 13, angle=0.05, shift=0.02)
    mild = al.fit(mild_rot, mild_t, kp2d, body_3d, iterations=2)
    np.testing.assert_allclose(mild.energy_before, al.energy(mild_rot, mild_t, kp2d, body_3d), rtol=1e-12)
    assert (mild.energy < mild.energy_before).all()
    again = al.fit(res.rot, res.transl, kp2d, body_3d, iterations=3)
    assert (again.energy <= again.energy_before).all()
    exact = ImageAligner(kp, K, WEAK).fit(rot, t, _observed(kp, rot, t, K), iterations=3)
    np.testing.assert_allclose(exact.rot, rot, atol=1e-6)                 # nothing to gain: unchanged


def test_zero_confidence_points_are_ignored(kp):
    """Points with confidence 0 (or below min_confidence) do not move the fit, wherever they are."""
    K = intrinsics_from_fov(SIZE, 60.0)
    rot, t = _poses(2, 6), np.array([[0.1, 0.0, 3.0], [0.0, 0.1, 3.2]])
    kp2d = _observed(kp, rot, t, K)
    rot0, t0 = _perturbed(rot, t, 7)
    hidden = np.r_[3:9, 24:45]                                    # legs and the left hand
    a, b = kp2d.copy(), kp2d.copy()
    a[:, hidden, 2] = 0.0
    b[:, hidden, 2] = 0.1                                         # below min_confidence (0.2)
    b[:, hidden, :2] = np.random.default_rng(8).uniform(0, 1000, (2, len(hidden), 2))
    al = ImageAligner(kp, K)
    ra, rb = al.fit(rot0, t0, a), al.fit(rot0, t0, b)
    np.testing.assert_allclose(ra.rot, rb.rot, atol=1e-12)
    np.testing.assert_allclose(ra.transl, rb.transl, atol=1e-12)
    seen = np.setdiff1d(np.arange(66), hidden)
    _, _, X = kp.pose(ra.rot, ra.transl)
    assert np.linalg.norm(_project(X, K)[:, seen] - kp2d[:, seen, :2], axis=-1).max() < 3.0


@pytest.mark.parametrize("fov", [45.0, 75.0])
def test_focal_estimate_recovers_a_known_focal(kp, fov):
    """Skeletons at 1.5-2.5 m projected through a known focal (0.5 px noise); the estimate starts
    from 60 degrees and recovers the focal within 3 %."""
    K = intrinsics_from_fov(SIZE, fov)
    rng = np.random.default_rng(9)
    rot = _poses(20, 10, spread=0.35)
    t = np.c_[rng.uniform(-0.3, 0.3, (20, 2)), rng.uniform(1.5, 2.5, 20)]
    _, _, X = kp.pose(rot, t)
    kp2d = np.concatenate([_project(X, K) + rng.normal(0.0, 0.5, X.shape[:2] + (2,)), np.ones(X.shape[:2] + (1,))], -1)
    K0 = intrinsics_from_fov(SIZE, 60.0)
    X0 = X + (t[:, 2] * (K0[0, 0] / K[0, 0] - 1.0))[:, None, None] * np.array([0.0, 0.0, 1.0])   # placed for K0
    est = estimate_focal(X0[:, :24], kp2d[:, :24], K0, SIZE)
    assert est.focal is not None and abs(est.focal / K[0, 0] - 1.0) < 0.03, (est, K[0, 0])
    assert est.log_std < MAX_LOG_F_STD


def test_focal_estimate_declines_without_perspective(kp):
    """A far, flat person (depth differences negligible): the focal is not determined, so no
    estimate is returned (the capture keeps the default)."""
    K = intrinsics_from_fov(SIZE, 40.0)
    rng = np.random.default_rng(11)
    rot = _poses(10, 12, spread=0.05)
    t = np.c_[rng.uniform(-0.2, 0.2, (10, 2)), np.full(10, 12.0)]
    _, _, X = kp.pose(rot, t)
    kp2d = np.concatenate([_project(X, K) + rng.normal(0.0, 1.0, X.shape[:2] + (2,)), np.ones(X.shape[:2] + (1,))], -1)
    est = estimate_focal(X[:, :24], kp2d[:, :24], intrinsics_from_fov(SIZE, 60.0), SIZE)
    assert est.focal is None and est.log_std > MAX_LOG_F_STD


def test_clip_camera_sources(tmp_path):
    cal = tmp_path / "cal.json"
    cal.write_text('{"fx": 900, "fy": 900, "cx": 640, "cy": 360}')
    assert clip_camera(SIZE, None, str(cal), estimate=True).source == "calibration"
    given = clip_camera(SIZE, 50.0, None, estimate=True)
    assert given.source == "fov" and not given.pending
    np.testing.assert_allclose(given.K, intrinsics_from_fov(SIZE, 50.0))
    cam = clip_camera(SIZE, None, None, estimate=True)
    assert cam.source == "default" and cam.pending
    cam.set_focal(1234.0, "estimated")
    assert cam.K[0, 0] == cam.K[1, 1] == 1234.0 and cam.K[0, 2] == 640.0 and not cam.pending
    assert {c.source for c in (given, cam)} <= set(CAMERA_SOURCES)


class _Rec:
    """The fields of a FrameRecord the smoother reads."""

    def __init__(self, index, valid, quat, transl):
        self.index, self.valid, self.quat, self.transl = index, valid, quat, transl


def test_centred_smoother_has_no_lag():
    """A constant-speed rotation and translation come out unchanged (no lag), a zig-zag is
    damped, an invalid frame splits the runs, and live (no lookahead) passes frames through."""
    n = 12
    angles = 0.05 * np.arange(n)
    quats = matrix_to_quat_wxyz(axis_angle_to_matrix(np.stack([np.zeros(n), angles, np.zeros(n)], -1)))
    noise = 0.004 * (-1.0) ** np.arange(n)
    recs = [_Rec(i, i != 7, np.tile(quats[i], (52, 1)), np.array([0.1 * i + noise[i], 0.0, 3.0])) for i in range(n)]
    sm = CentredSmoother(fps=25.0, sigma_s=0.05)
    out = []
    for i in range(0, n, 4):
        out += sm.push(recs[i:i + 4])
        assert len(out) <= i + 4 - (sm.half if i + 4 < n else 0)
    out += sm.flush()
    assert [r.index for r in out] == list(range(n)) and sm.half == math.ceil(2.5 * 0.05 * 25.0)
    for r, a in zip(out, angles):
        if r.valid:   # rotation: constant speed, exact (quaternion averaging is exact to 1e-4 here)
            ang = 2 * np.arccos(np.clip(np.abs(r.quat[:, 0]), 0, 1))
            np.testing.assert_allclose(ang, a, atol=2e-4)
    inner = [r for r in out if 2 <= r.index <= 4]            # full windows: the zig-zag is damped
    assert all(abs(r.transl[0] - 0.1 * r.index) < 0.5 * 0.004 for r in inner)
    live = CentredSmoother(fps=25.0, sigma_s=0.0)
    q = recs[0].quat.copy()
    assert live.push(recs[:1]) == recs[:1] and live.half == 0
    np.testing.assert_array_equal(recs[0].quat, q)


def test_centred_smoother_adapts_to_the_image_speed(kp):
    """With the model's keypoints, a joint whose 2D points stand still is smoothed over
    ``smoothing_max_s``, one whose points move fast over ``smoothing_s`` only: the same
    wobble (period 8 frames at 30 fps) is damped more on the still clip."""
    cam = clip_camera(SIZE, 60.0, None, estimate=False)
    n, zig = 24, 0.02 * np.sin(2 * np.pi * np.arange(24) / 8)

    def run(px_per_frame: float) -> float:
        recs = []
        for i in range(n):
            r = _Rec(i, True, matrix_to_quat_wxyz(axis_angle_to_matrix(np.tile([0.0, zig[i], 0.0], (52, 1)))),
                     np.array([0.0, 0.0, 3.0]))
            pts = np.tile([640.0 + px_per_frame * i, 360.0, 1.0], (66, 1))
            r.body_2d, r.hands_2d, r.ik_conf = pts[:24], pts[24:].reshape(2, 21, 3), np.ones(66)
            recs.append(r)
        sm = CentredSmoother(30.0, 0.04, 0.08, 0.3, kp, cam)
        out = sm.push(recs) + sm.flush()
        angles = [2 * np.arccos(min(abs(r.quat[5, 0]), 1.0)) for r in out[8:16]]
        return float(np.mean(angles)) / float(np.mean(np.abs(zig[8:16])))      # amplitude kept

    still, fast = run(0.0), run(40.0)            # 40 px/frame at 3 m: ~2 m/s
    assert still < 0.4 and fast > 0.55 and still < 0.5 * fast, (still, fast)


def test_shape_rescale():
    s = ShapeEstimator(window=3)
    s.add(np.zeros(16), 1.0, 1.0)
    s.rescale(1.1)
    assert s.frozen and s.scale == pytest.approx(1.1)


def test_shape_set_betas_keeps_the_iks():
    s = ShapeEstimator(window=3)
    s.add(np.full(16, 0.5), 1.0, 1.0)
    s.set_betas(np.zeros(16))
    assert s.frozen and np.all(s.betas == 0.0) and np.all(s.ik_betas == 0.5) and s.scale == 1.0
    with pytest.raises(ValueError, match="betas"):
        s.set_betas(np.full(16, np.nan))


def _bone_proportions(body, betas) -> np.ndarray:
    """Rest-pose body bone lengths over their sum (the image cannot see the overall size)."""
    j = body.rest_joints(betas)[:NUM_BODY_JOINTS]
    length = np.linalg.norm(j[1:] - j[PARENTS[1:NUM_BODY_JOINTS]], axis=-1)
    return length / length.sum()


def _shape_scene(body, seed: int, B: int = 12):
    """A person of a random shape in ``B`` random poses 2-3 m from a 60 deg camera: her 2D points
    (1 px noise), the detector's 3D (exact), the IK's rotations (5 deg off) and a beta that is off
    by N(0, 1) in each fitted component (BodyIKNet's beta is about that poor, docs/iknet.md)."""
    rng = np.random.default_rng(seed)
    K = intrinsics_from_fov(SIZE, 60.0)
    beta = np.zeros(16)
    beta[:NUM_FIT_BETAS] = rng.normal(0.0, 1.0, NUM_FIT_BETAS)
    rot = _poses(B, seed + 100, spread=0.3)
    t = np.column_stack([rng.normal(0, 0.2, B), rng.normal(0, 0.1, B), rng.uniform(2.0, 3.0, B)])
    kp = ModelKeypoints(body)
    kp.set_shape(beta, 1.0)
    _, _, X = kp.pose(rot, t)
    kp2d = _observed(kp, rot, t, K)
    kp2d[..., :2] += rng.normal(0.0, 1.0, kp2d[..., :2].shape)
    rot_ik = axis_angle_to_matrix(rng.normal(0.0, 0.05, rot.shape[:2] + (3,))) @ rot
    beta_ik = beta.copy()
    beta_ik[:NUM_FIT_BETAS] += rng.normal(0.0, 1.0, NUM_FIT_BETAS)
    return kp, K, beta, beta_ik, rot_ik, t, kp2d, X


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("sigma_beta, gain", [(ShapeFitConfig().sigma_beta, 0.9), (3.5, 0.5)])
def test_shape_fit_recovers_the_bone_proportions(body, seed, sigma_beta, gain):
    """From the 2D points of 12 frames the per-clip beta fit takes the skeleton's proportions from
    the IK's (a few % off per bone) towards the person's: with the default prior (the data term an
    average over frames, for a detector's systematic keypoint offsets) part of the way; with the
    prior of 12 independent frames (sigma_beta ~ sqrt(12): these synthetic points have no
    systematic error) most of it.  Components beyond the fitted ones are kept; the energy goes down."""
    kp, K, beta, beta_ik, rot_ik, t, kp2d, X = _shape_scene(body, seed)
    fit = fit_clip_shape(ImageAligner(kp, K), rot_ik, t, kp2d, X, beta_ik, 1.0, ShapeFitConfig(sigma_beta=sigma_beta))
    truth = _bone_proportions(body, beta)
    err_ik = np.abs(_bone_proportions(body, beta_ik) / truth - 1.0).mean()
    err_fit = np.abs(_bone_proportions(body, fit.betas) / truth - 1.0).mean()
    assert err_fit < gain * err_ik, (err_ik, err_fit)
    assert fit.energy < fit.energy_before
    np.testing.assert_array_equal(fit.betas[NUM_FIT_BETAS:], beta_ik[NUM_FIT_BETAS:])
    np.testing.assert_allclose(kp.betas, fit.betas)          # the aligner's model has the clip's shape


def test_shape_fit_keeps_a_right_beta(body):
    """Started at the person's own beta, the fit stays there (detector noise alone does not move it)."""
    kp, K, beta, _, rot_ik, t, kp2d, X = _shape_scene(body, 2)
    fit = fit_clip_shape(ImageAligner(kp, K), rot_ik, t, kp2d, X, beta, 1.0)
    truth = _bone_proportions(body, beta)
    assert np.abs(_bone_proportions(body, fit.betas) / truth - 1.0).mean() < 0.01
    assert np.abs(fit.betas - beta).max() < 0.5, fit.betas - beta


# --------------------------------------------------------------------------- capture
@pytest.fixture(scope="module")
def replay_captures(tmp_path_factory):
    """The recorded demo-clip detections captured with and without the fit (no face)."""
    from test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording

    from model_runtime.capture.pipeline import build_pipeline

    out = {}
    for align in (True, False):
        opts = CaptureOptions(device="cpu", face=False, align=align)
        pipe = build_pipeline(opts, detector=ReplayDetector())
        path = tmp_path_factory.mktemp("align") / f"{align}.npz"
        pipe.run(GreyFrames(_load_recording()), path)
        out[align] = load_capture(path)
    return out


def _capture_reprojection(body, cap) -> tuple[float, float]:
    """Median px distance of the posed model's body / hand keypoints to the detections (conf >= 0.5)."""
    kp = ModelKeypoints(body)
    kp.set_shape(cap["betas"], float(cap["scale"]))
    _, _, X = kp.pose(rot6d_to_matrix(cap["pose_6d"].astype(np.float64)), cap["transl"].astype(np.float64))
    obs = cap["keypoints_2d"].astype(np.float64)
    err = np.linalg.norm(_project(X, cap["camera_K"].astype(np.float64)) - obs[..., :2], axis=-1)
    ok = (obs[..., 2] >= 0.5) & cap["valid"][:, None]
    return float(np.median(err[:, :24][ok[:, :24]])), float(np.median(err[:, 24:][ok[:, 24:]]))


def test_capture_is_aligned_to_the_detections(body, replay_captures):
    """With the fit the model's points land on the detector's (a few px on the 640x480 clip,
    several times closer than without), the camera source is recorded, and the file's K is
    the one the model was fitted with."""
    on, off = replay_captures[True], replay_captures[False]
    b_on, h_on = _capture_reprojection(body, on)
    b_off, h_off = _capture_reprojection(body, off)
    assert b_on < 3.0 and h_on < 4.0, (b_on, h_on)
    assert b_on < 0.5 * b_off and h_on < 0.5 * h_off, (b_on, b_off, h_on, h_off)
    assert str(on["camera_source"]) in ("estimated", "default")
    assert str(off["camera_source"]) == "default"
    np.testing.assert_allclose(off["camera_K"], intrinsics_from_fov((640, 480), 60.0), rtol=1e-6)
    assert on.num_frames == off.num_frames == 81 and on["valid"].all()


def test_capture_fits_the_shape_to_the_image(body, replay_captures):
    """On the demo clip's recorded detections (the clip is rendered from the built-in model with a
    known beta, samples/demo_clip_gt.npz) the file's beta is the image-fitted one: the skeleton's
    bone proportions are closer to the true ones than the IK's (2.1 % -> 1.3 % off per bone on
    the video, docs/fidelity.md); beta beyond the fitted components stays the IK's."""
    from pathlib import Path

    on, off = replay_captures[True], replay_captures[False]
    truth = _bone_proportions(body, load_capture(Path(__file__).parents[1] / "samples" / "demo_clip_gt.npz")["betas"])
    err_on, err_off = (np.abs(_bone_proportions(body, c["betas"]) / truth - 1.0).mean() for c in (on, off))
    assert err_on < 0.8 * err_off, (err_on, err_off)
    np.testing.assert_array_equal(on["betas"][NUM_FIT_BETAS:], off["betas"][NUM_FIT_BETAS:])


def test_live_fit_is_filtered_causally(tmp_path, monkeypatch):
    """Live, the fit pulls every frame onto its own detections; the post-fit One Euro takes the
    jitter out again (recorded demo-clip detections, live capture, with and without the filter),
    and the filter follows the capture's smoothing: scaled by LIVE_FIT_SPEEDUP, off with it."""
    from test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording

    from model_runtime.capture import align_clip
    from model_runtime.capture.pipeline import build_pipeline
    from model_runtime.core.options import SmoothingConfig
    from model_runtime.evals.video import PosedCapture, jitter

    def live_jitter(path):
        pipe = build_pipeline(CaptureOptions(device="cpu", face=False, feet=False), detector=ReplayDetector())
        pipe.run(GreyFrames(_load_recording()), path, live=True)
        cap = load_capture(path)
        return jitter(PosedCapture(cap).joints, cap["valid"].astype(bool))

    filtered = live_jitter(tmp_path / "filtered.npz")
    monkeypatch.setattr(align_clip.ClipAlignment, "_live_filtered", lambda self, recs: recs)
    raw = live_jitter(tmp_path / "raw.npz")
    assert filtered < 0.7 * raw, (filtered, raw)
    s = align_clip.live_fit_smoothing(SmoothingConfig())
    assert (s.min_cutoff, s.beta) == (1.5 * align_clip.LIVE_FIT_SPEEDUP, 0.3 * align_clip.LIVE_FIT_SPEEDUP)
    assert not align_clip.live_fit_smoothing(SmoothingConfig(enabled=False)).enabled


def test_shape_window_end_is_the_frame_that_froze_it():
    s = ShapeEstimator(window=2)
    s.add(np.zeros(16), 1.0, 0.0, index=3)          # weight 0: not counted
    s.add(np.zeros(16), 1.0, 1.0, index=4)
    assert not s.frozen and s.window_end is None
    s.add(np.zeros(16), 1.0, 1.0, index=7)
    s.add(np.zeros(16), 1.0, 1.0, index=9)          # after the window: ignored
    assert s.frozen and s.window_end == 7


def test_offline_capture_does_not_depend_on_how_frames_arrive(tmp_path):
    """The clip's calibration runs on the shape window's frames and the fit on fixed chunks of
    ALIGN_BATCH valid frames, so the same detections give the same file whether the IK takes one
    frame or five at a time (recorded demo-clip detections; before, courtyard's scale moved
    0.957 <-> 0.970 between runs with the keyframe fits' timing)."""
    from test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording

    from model_runtime.capture.pipeline import build_pipeline

    caps = []
    for batch in (1, 5):
        pipe = build_pipeline(CaptureOptions(device="cpu", face=False, ik_batch=batch), detector=ReplayDetector())
        pipe.run(GreyFrames(_load_recording()), tmp_path / f"{batch}.npz")
        caps.append(load_capture(tmp_path / f"{batch}.npz"))
    for key in ("scale", "betas", "camera_K", "pose_6d", "transl"):       # the IK's batched matmuls: ~1e-7
        np.testing.assert_allclose(caps[0][key], caps[1][key], rtol=0, atol=2e-5, err_msg=key)
    np.testing.assert_array_equal(caps[0]["foot_contact"], caps[1]["foot_contact"])


def test_calibration_does_not_wait_for_the_keyframe_fits(tmp_path, monkeypatch):
    """Offline, the clip's calibration runs as soon as the shape window's frames are held, not when
    their keyframe face fits are done (``MotionPostprocessor.calibrate_early``; on a short clip that
    wait put it after the last detection): the real pipeline on LivePortrait d0 (shared data) with
    the first keyframe fit held until the calibration has run; the capture is the one made without
    holding it."""
    import threading

    from conftest import REALDATA
    from model_runtime.capture.pipeline import build_pipeline
    from model_runtime.capture.sources import open_source
    from model_runtime.capture.align_clip import ClipAlignment
    from model_runtime.face.stage import FaceFitStage

    video = REALDATA / "LivePortrait/assets/examples/driving/d0.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is missing (shared real data)")

    def capture(path):
        with open_source(str(video)) as src:
            build_pipeline(CaptureOptions(device="cpu")).run(src, path)
        return load_capture(path)

    free = capture(tmp_path / "free.npz")
    calibrated, waited = threading.Event(), []
    calibrate, fit_appearance = ClipAlignment.calibrate, FaceFitStage.fit_appearance

    def calibrate_then_tell(self, *a, **k):
        out = calibrate(self, *a, **k)
        calibrated.set()
        return out

    def fit_after_calibration(self, *a, **k):
        if not waited:
            waited.append(calibrated.wait(timeout=60))     # the first keyframe fit waits for the calibration
        return fit_appearance(self, *a, **k)

    monkeypatch.setattr(ClipAlignment, "calibrate", calibrate_then_tell)
    monkeypatch.setattr(FaceFitStage, "fit_appearance", fit_after_calibration)
    held = capture(tmp_path / "held.npz")
    assert waited == [True]                              # the calibration ran while the fit was held
    for key in ("scale", "betas", "camera_K", "pose_6d", "transl", "face_expression", "face_sh", "foot_contact"):
        np.testing.assert_array_equal(free[key], held[key], err_msg=key)
