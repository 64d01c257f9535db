"""The focal length from the scene's vanishing points (model_runtime/capture/scene_focal.py)."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from model_runtime.capture.focal import MAX_LOG_F_STD
from model_runtime.capture.scene_focal import (SceneFocal, SceneFocalSampler, combine_frames, frame_focal,
                                               horizon_up, line_segments, person_box, vanishing_points)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "realdata"
MMPOSE = SHARED / "mmpose" / "tests" / "data"


def _room(f: float, size=(960, 720), yaw_deg=35.0, pitch_deg=-12.0, roll_deg=3.0, with_up: bool = False):
    """A rendered room corner seen by a pinhole camera of focal ``f`` px (principal point at the centre):
    a tiled floor and two walls of tiles in two colours, so their edges run along three orthogonal
    directions.  -> ``(H, W, 3)`` uint8 BGR (and, ``with_up``, the world's up in the camera frame)."""
    W, H = size
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])

    def rot(axis, deg):
        a = math.radians(deg)
        c, s = math.cos(a), math.sin(a)
        i, j = [(1, 2), (0, 2), (0, 1)][axis]
        R = np.eye(3)
        R[i, i] = R[j, j] = c
        R[i, j], R[j, i] = -s, s
        return R

    # world: y down, the corner at the origin; walls x = 0 and z = 0 (room at x, z > 0), floor y = 1.5
    R = rot(2, roll_deg) @ rot(0, pitch_deg) @ rot(1, yaw_deg + 180.0)
    cam = np.array([3.2, 0.0, 3.2])
    img = np.full((H, W, 3), 90, np.uint8)

    def quad(corners, colour):
        Xc = (np.asarray(corners, float) - cam) @ R.T
        if (Xc[:, 2] < 0.2).any():
            return
        p = Xc @ K.T
        cv2.fillConvexPoly(img, np.round(p[:, :2] / p[:, 2:]).astype(np.int32), colour, lineType=cv2.LINE_AA)

    t = 0.5
    for a in range(12):
        for b in range(8):
            col = (200, 190, 170) if (a + b) % 2 else (60, 70, 110)
            quad([(a * t, 1.5, b * t), ((a + 1) * t, 1.5, b * t), ((a + 1) * t, 1.5, (b + 1) * t),
                  (a * t, 1.5, (b + 1) * t)], col)                                                   # floor
    for a in range(12):
        for b in range(-4, 3):
            col = (150, 200, 220) if (a + b) % 2 else (40, 90, 60)
            quad([(a * t, b * t, 0.0), ((a + 1) * t, b * t, 0.0), ((a + 1) * t, (b + 1) * t, 0.0),
                  (a * t, (b + 1) * t, 0.0)], col)                                                   # wall z = 0
            quad([(0.0, b * t, a * t), (0.0, b * t, (a + 1) * t), (0.0, (b + 1) * t, (a + 1) * t),
                  (0.0, (b + 1) * t, a * t)], col[::-1])                                             # wall x = 0
    return (img, R @ np.array([0.0, -1.0, 0.0])) if with_up else img


@pytest.mark.parametrize("fov", [40.0, 60.0, 85.0])
def test_recovers_the_focal_of_a_rendered_room(fov):
    size = (960, 720)
    f = 0.5 * max(size) / math.tan(math.radians(fov) / 2)
    img, up = _room(f, size, with_up=True)
    est = frame_focal(img)
    assert est.focal is not None and est.log_std <= MAX_LOG_F_STD, est
    assert abs(math.log(est.focal / f)) < 0.03, (est.focal, f)
    assert est.up is not None and np.degrees(np.arccos(np.clip(est.up @ up, -1, 1))) < 1.5   # the scene's vertical
    assert est.pairs >= 1


def test_the_horizon_orients_the_ground_whatever_the_focal():
    """The rendered room's horizon (through its two horizontal vanishing points) gives the true up under
    the true K; under another focal, the up of that camera's geometry (the same image line)."""
    f = 831.4
    img, up = _room(f, with_up=True)
    est = frame_focal(img)
    assert est.horizon is not None
    K = np.array([[f, 0, 480.0], [0, f, 360.0], [0, 0, 1]])
    assert np.degrees(np.arccos(np.clip(horizon_up(est.horizon, K) @ up, -1, 1))) < 1.5
    K2 = K.copy()
    K2[0, 0] = K2[1, 1] = 2 * f
    n2 = horizon_up(est.horizon, K2)
    assert n2[1] < 0 and abs(np.linalg.norm(n2) - 1) < 1e-9
    line = np.linalg.inv(K2).T @ n2                               # its vanishing line is the same image line
    np.testing.assert_allclose(line / line[1], est.horizon / est.horizon[1], atol=1e-9)


def test_frames_whose_horizons_disagree_give_none():
    h = lambda y, a=0.0: np.array([a, 1.0, -y])  # noqa: E731  (y = -(a x + c))
    same = combine_frames([SceneFocal(None, math.inf, horizon=h(150.0)), SceneFocal(None, math.inf, horizon=h(160.0)),
                           SceneFocal(None, math.inf, horizon=h(155.0))], image_height=720.0)
    np.testing.assert_allclose(same.horizon, h(155.0))
    apart = combine_frames([SceneFocal(None, math.inf, horizon=h(20.0)), SceneFocal(None, math.inf, horizon=h(100.0)),
                            SceneFocal(None, math.inf, horizon=h(235.0))], image_height=720.0)
    assert apart.horizon is None                                  # a street walked through: no horizon
    few = combine_frames([SceneFocal(None, math.inf, horizon=h(150.0)), SceneFocal(None, math.inf),
                          SceneFocal(None, math.inf)], image_height=720.0)
    assert few.horizon is None


def test_a_frontal_wall_does_not_give_a_focal():
    """Seen square on, the wall's edges are parallel in the image (vanishing points at infinity):
    they say nothing of the focal, and the estimate declines instead of guessing."""
    img = np.full((720, 960, 3), 80, np.uint8)
    for a in range(12):
        for b in range(9):
            if (a + b) % 2:
                cv2.rectangle(img, (a * 80, b * 80), (a * 80 + 79, b * 80 + 79), (220, 200, 180), -1)
    assert line_segments(img).shape[0] > 20
    est = frame_focal(img)
    assert est.focal is None


def test_the_persons_box_is_left_out():
    img = _room(700.0)
    seg = line_segments(img)
    box = (300.0, 200.0, 200.0, 300.0)
    kept = line_segments(img, exclude=[box])
    mid = 0.5 * (kept[:, :2] + kept[:, 2:])
    inside = (mid[:, 0] >= 300) & (mid[:, 0] <= 500) & (mid[:, 1] >= 200) & (mid[:, 1] <= 500)
    assert len(kept) < len(seg) and not inside.any()
    pts = np.array([[310.0, 220.0, 0.9], [480.0, 470.0, 0.8], [2000.0, 2000.0, 0.1]])
    x, y, w, h = person_box(pts, (960, 720))
    assert x < 310 and y < 220 and x + w > 480 and y + h > 470 and x + w < 600   # the unseen point is not used
    assert person_box(np.zeros((5, 3)), (960, 720)) is None


def test_vanishing_points_are_found_without_a_focal():
    """The three directions of the rendered room come out as three points, strongest first."""
    img = _room(700.0)
    vps = vanishing_points(line_segments(img), (960, 720))
    assert len(vps) >= 3
    assert vps[0].support >= vps[1].support >= vps[2].support
    assert not (vps[0].inliers & vps[1].inliers).any()


def test_frames_that_disagree_give_no_focal():
    agree = combine_frames([SceneFocal(1000.0, 0.03, 3, 1), SceneFocal(1030.0, 0.04, 3, 1), SceneFocal(None, math.inf)])
    assert agree.focal is not None and abs(agree.focal - 1013) < 10 and agree.frames == 2
    assert len(agree.per_frame) == 3
    apart = combine_frames([SceneFocal(1000.0, 0.03, 3, 1), SceneFocal(1400.0, 0.03, 3, 1)])
    assert apart.focal is None and apart.log_std > MAX_LOG_F_STD
    few = combine_frames([SceneFocal(1000.0, 0.03, 3, 1), SceneFocal(None, math.inf), SceneFocal(None, math.inf)])
    assert few.focal is None


def test_the_sampler_measures_the_frames_at_its_times():
    """Frames at 0, 1/3 and 2/3 of the calibration window (3 s here: 0, 1, 2 s, whatever the first
    frame's time), each once; the result is the rendered room's focal."""
    f = 800.0
    img = _room(f)
    s = SceneFocalSampler(fps=10.0, window_s=3.0)
    offered = []
    for i in range(40):
        t = 5.0 + i / 10.0
        before = len(s._futures)
        s.offer(t, img if i % 7 else img, np.array([[100.0, 100.0, 0.9], [150.0, 300.0, 0.9]]))
        if len(s._futures) > before:
            offered.append(round(t - 5.0, 3))
    assert offered == [0.0, 1.0, 2.0]
    res = s.result()
    assert res.frames == 3 and res.focal is not None and abs(math.log(res.focal / f)) < 0.03
    s.close()


@pytest.mark.skipif(not (MMPOSE / "h36m" / "cameras.pkl").exists(), reason="needs ../shared (Human3.6M, MPI-INF-3DHP)")
def test_real_calibrated_cameras():
    """Human3.6M and MPI-INF-3DHP frames with their calibrations (images as shipped, lens distortion
    and all): where the estimate is given it is within 5 % of the calibrated focal, and it is given
    on at least two of the eight; none is wrong."""
    import sys

    repo = Path(__file__).resolve().parents[1]
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from tools.scene_focal_check import calibrated     # the frames and their calibrations, as the docs' check reads them

    given = 0
    for name, img, f, box in calibrated(SHARED):
        est = frame_focal(img, [box])
        if est.focal is not None and est.log_std <= MAX_LOG_F_STD:
            given += 1
            assert abs(math.log(est.focal / f)) < 0.05, (name, est.focal, f)
    assert given >= 1


COURTYARD = SHARED / "mmhuman3d" / "demo" / "resources" / "single_person_demo.mp4"


@pytest.mark.skipif(not COURTYARD.exists(), reason="needs ../shared (the mmhuman3d courtyard clip)")
def test_capture_takes_the_focal_from_the_scene(tmp_path):
    """The real capture of the 1080x1920 courtyard clip (a building's wall, paving, window frames):
    ``camera_source`` 'scene', and the file's focal is what the clip's frames at 0, 1 and 2 s give
    alone (where the 60-degree default would be 1663 px); and the ground plane stands on the scene's
    vertical (its normal within 3 degrees of the frames' vertical vanishing direction)."""
    import subprocess
    import sys

    from model_runtime.core.capture_file import load_capture

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "court.npz"
    r = subprocess.run([sys.executable, "-m", "model_runtime", "capture", str(COURTYARD), "-o", str(out),
                        "--no-face", "--quiet"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    cap = load_capture(out)
    assert str(cap["camera_source"]) == "scene"
    assert "camera: 46." in r.stderr and "measured on the scene's vanishing points" in r.stderr   # the CLI says so
    cap_video = cv2.VideoCapture(str(COURTYARD))
    fps = cap_video.get(cv2.CAP_PROP_FPS)
    alone = []
    for t in (0.0, 1.0, 2.0):
        cap_video.set(cv2.CAP_PROP_POS_FRAMES, round(t * fps))
        alone.append(frame_focal(cap_video.read()[1]))
    f = float(cap["camera_K"][0, 0])
    assert all(e.focal is not None for e in alone)
    assert min(e.focal for e in alone) * 0.97 < f < max(e.focal for e in alone) * 1.03
    assert abs(f - 1663) > 300
    up = np.mean([e.up for e in alone], axis=0)
    n = np.asarray(cap["ground_plane"][:3], np.float64)
    assert np.degrees(np.arccos(n @ up / np.linalg.norm(up) / np.linalg.norm(n))) < 3.0


H36M_S8 = MMPOSE / "h36m" / "S8" / "S8_WalkDog_1.55011271" / "S8_WalkDog_1.55011271_000026.jpg"


@pytest.mark.skipif(not H36M_S8.exists(), reason="needs ../shared (Human3.6M)")
def test_a_single_photo_gets_the_scene_focal(tmp_path):
    """A one-image folder (a Human3.6M frame, calibrated focal 1149 px): too few frames for the body's
    calibration, but the scene's focal needs none; the capture records it."""
    import subprocess
    import sys

    from model_runtime.core.capture_file import load_capture

    folder = tmp_path / "photo"
    folder.mkdir()
    (folder / "0000.jpg").symlink_to(H36M_S8)       # used in place, not copied
    out = tmp_path / "photo.npz"
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-m", "model_runtime", "capture", str(folder), "-o", str(out),
                        "--no-face", "--no-feet", "--quiet"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    cap = load_capture(out)
    assert str(cap["camera_source"]) == "scene"
    assert abs(math.log(float(cap["camera_K"][0, 0]) / 1148.6)) < 0.05


@pytest.mark.skipif(not COURTYARD.exists(), reason="needs ../shared (the mmhuman3d courtyard clip)")
def test_live_capture_measures_the_first_frame(tmp_path):
    """Live (no look-ahead), the first frame's scene focal is used from that frame on: the file's K is
    it, the model projects onto the detections through that K, and the first frame's depth is the
    clip's (not the 60-degree default's, 25 % nearer)."""
    from model_runtime.capture.pipeline import build_pipeline
    from model_runtime.capture.sources import open_source
    from model_runtime.core.capture_file import load_capture
    from model_runtime.core.options import CaptureOptions
    from model_runtime.evals.video import PosedCapture, evaluate

    first = frame_focal(cv2.VideoCapture(str(COURTYARD)).read()[1])
    pipe = build_pipeline(CaptureOptions(device="cpu", face=False, feet=False, end=12))
    out = tmp_path / "live.npz"
    with open_source(str(COURTYARD), end=12) as src:
        pipe.run(src, out, live=True)
    cap = load_capture(out)
    assert str(cap["camera_source"]) == "scene"
    f = float(cap["camera_K"][0, 0])
    assert first.focal is not None and abs(math.log(f / first.focal)) < 0.03   # the person's box is left out
    depth = cap["transl"][:, 2]
    assert abs(depth[0] / np.median(depth) - 1) < 0.05
    figures, _ = evaluate(cap, PosedCapture(cap))
    assert figures["reprojection_px"]["body_median"] < 16.0, figures["reprojection_px"]


TENNIS = SHARED / "GVHMR" / "docs" / "example_video" / "tennis.mp4"


@pytest.mark.skipif(not TENNIS.exists(), reason="needs ../shared (the GVHMR tennis clip)")
@pytest.mark.parametrize("fov", [None, 19.0])
def test_the_ground_plane_lies_on_the_courts_horizon(tmp_path, fov):
    """Tennis: no triple (the court gives two directions, no vertical), so the default lens stays; but
    the court's two directions give the horizon, and the feet's ground plane takes its orientation
    from it under the clip's K, whatever the lens (the default, or ``--fov 19``): its vanishing line
    within 10 px of the court's at the centre column (it was 190-210 px below it)."""
    import subprocess
    import sys

    from model_runtime.core.capture_file import load_capture

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "tennis.npz"
    lens = [] if fov is None else ["--fov", str(fov)]
    r = subprocess.run([sys.executable, "-m", "model_runtime", "capture", str(TENNIS), "-o", str(out), "--end", "90",
                        "--no-face", "--quiet", *lens], cwd=repo, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    cap = load_capture(out)
    assert str(cap["camera_source"]) == ("default" if fov is None else "fov")
    K = cap["camera_K"].astype(np.float64)
    court = frame_focal(cv2.VideoCapture(str(TENNIS)).read()[1]).horizon
    assert court is not None
    a, b, c = np.linalg.inv(K).T @ np.asarray(cap["ground_plane"][:3], np.float64)
    x = K[0, 2]
    assert abs(-(a * x + c) / b - (-(court[0] * x + court[2]) / court[1])) < 10.0


def test_a_frame_that_cannot_be_measured_gives_no_estimate(caplog):
    """A malformed frame (one channel) makes its measurement fail: one warning naming the frame's time,
    no estimate, and the capture goes on (result() does not raise)."""
    s = SceneFocalSampler(fps=10.0, window_s=3.0)
    s.offer(0.0, np.zeros((64, 64, 1), np.uint8), None)
    with caplog.at_level("WARNING"):
        res = s.result()
    assert res.focal is None and res.frames == 0
    assert any("0.00 s could not be measured" in r.getMessage() for r in caplog.records)
    s.close()
