"""Feet (issue 10, item 4): contact labels, ground plane, planted feet locked, root depth.

* pure functions of ``capture/feet.py``: vectorised hysteresis, the plane fit (tilted camera, lifted
  feet as outliers, a standing person's points on a line), the lock plan's weights and targets,
  the root's interpolation across a flight, the two-bone IK (posed with the real skeleton's forward
  kinematics: the ankle reaches the target, bones keep their lengths, the foot its orientation);
* the capture file's ``ground_plane`` (optional for older files, validated);
* the capture pipeline on the real MediaPipe detections of the demo clip (``tests/data``), whose
  ground truth (``samples/demo_clip_gt.npz``: the rendered avatar's motion and camera) gives the
  true floor and the true planted frames: the plane is the floor, planted feet stay put, the
  labels agree with the truth, and a waist-up version gets no contact and no plane.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_runtime.capture import feet as F
from model_runtime.core import capture_file as cf
from model_runtime.core import rotations
from model_runtime.core.errors import ModelFileError
from model_runtime.core.lbs import forward_kinematics_rt
from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES, PARENTS

REPO = Path(__file__).resolve().parents[1]
GT = REPO / "samples" / "demo_clip_gt.npz"


# --------------------------------------------------------------------------- pure functions
def test_hysteresis_vectorised_keeps_state_between_thresholds():
    on = np.array([0, 1, 0, 0, 0, 0, 1, 0], bool)
    off = np.array([0, 0, 0, 1, 0, 0, 0, 0], bool)
    np.testing.assert_array_equal(F.hysteresis(on, off), [0, 1, 1, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(F.hysteresis(on, off, initial=True), [1, 1, 1, 0, 0, 0, 1, 1])
    # off wins where both hold; columns are independent
    both = F.hysteresis(np.stack([on, on | off], 1), np.stack([off, off], 1))
    np.testing.assert_array_equal(both[:, 1], [0, 1, 1, 0, 0, 0, 1, 1])


def test_contact_labels_need_low_slow_and_seen():
    mid_h, mid_v = 0.5 * (F.ON_HEIGHT + F.OFF_HEIGHT), 0.5 * (F.ON_SPEED + F.OFF_SPEED)
    slow = 0.5 * F.ON_SPEED
    h = np.array([0.0, 0.0, 0.0, mid_h, 2 * F.OFF_HEIGHT, 0.0, 0.0, 0.0])
    v = np.array([slow, slow, slow, slow, slow, slow, mid_v, 2 * F.OFF_SPEED])
    seen = np.array([0, 1, 1, 1, 1, 1, 1, 1], bool)
    c = F.contact_labels(np.c_[h, h], np.c_[v, v], np.c_[seen, seen])
    # unseen: off; on when low and slow; between the thresholds: kept; too high or too fast: off
    np.testing.assert_array_equal(c[:, 0], [0, 1, 1, 1, 0, 1, 1, 0])


def test_ground_plane_robust_to_lifted_feet_and_tilt():
    rng = np.random.default_rng(0)
    tilt = rotations.axis_angle_to_matrix(np.radians(15.0) * np.array([1.0, 0.0, 0.0]))
    n_true = tilt @ np.array([0.0, -1.0, 0.0])
    d_true = 0.95                                                   # camera 0.95 m above the plane
    xz = np.c_[rng.uniform(-1, 1, 300), np.zeros(300), rng.uniform(2.5, 5, 300)]
    base = xz @ tilt.T
    base = base - (base @ n_true + d_true)[:, None] * n_true        # on the plane
    lifted = base[:60] + rng.uniform(0.1, 0.4, (60, 1)) * n_true     # feet in the air
    pts = np.concatenate([base + rng.normal(0, 0.01, base.shape), lifted])
    plane = F.fit_ground_plane(pts)
    assert abs(np.linalg.norm(plane[:3]) - 1) < 1e-9 and plane[1] < 0
    assert np.degrees(np.arccos(plane[:3] @ n_true)) < 1.5
    assert abs(plane[3] - d_true) < 0.02
    # a standing person: points along one line (depth noise) fix one tilt only; the prior keeps
    # the other near camera -y instead of any plane through the line
    line = np.c_[np.full(50, 0.2), np.full(50, 0.9), np.linspace(3.0, 3.4, 50)]
    p2 = F.fit_ground_plane(line)
    assert np.degrees(np.arccos(-p2[1])) < 3.0 and abs(line @ p2[:3] + p2[3]).max() < 0.01
    assert F.fit_ground_plane(np.zeros((2, 3))) is None


def test_ground_plane_takes_the_scenes_vertical():
    """Planted feet of one standing person lie along a strip: they fix the plane's tilt along it only.
    The scene's measured vertical (scene_focal.SceneFocal.up) orients the rest; without it the weak prior
    keeps the normal near camera -y.  A camera pitched down 13 degrees (courtyard's)."""
    rng = np.random.default_rng(1)
    tilt = rotations.axis_angle_to_matrix(np.radians(-13.0) * np.array([1.0, 0.0, 0.0]))
    up = tilt @ np.array([0.0, -1.0, 0.0])                           # the scene's vertical, camera frame
    strip = np.c_[rng.uniform(-0.3, 0.3, 40), np.zeros(40), rng.uniform(3.2, 3.25, 40)]
    pts = strip - (strip @ up + 1.5)[:, None] * up + rng.normal(0, 0.01, strip.shape)   # 1.5 m below the camera
    angle = lambda p: np.degrees(np.arccos(np.clip(p[:3] @ up, -1, 1)))  # noqa: E731
    weak, scene = F.fit_ground_plane(pts), F.fit_ground_plane(pts, up=up)
    assert angle(scene) < 1.0 and abs(scene[3] - 1.5) < 0.03
    assert angle(weak) > 5.0                                         # the strip alone leaves it near -y
    assert np.array_equal(F.fit_ground_plane(pts, up=None), weak)    # no vertical: as before
    assert scene[1] < 0 and abs((pts @ scene[:3] + scene[3])).max() < 0.05


def test_lock_plan_weights_and_targets():
    c = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    pos = np.zeros((12, 3))
    pos[:, 0] = np.arange(12) * 0.01                                # a foot drifting 1 cm a frame
    w, target = F.lock_plan(c, pos, blend=2, half_window=10)
    assert (w[3:7] == 1).all() and w[0] == 0 and (w[9:] == 0).all()
    assert 0 < w[1] < w[2] < 1 and 1 > w[7] > w[8] > 0               # smooth ramps either side
    np.testing.assert_allclose(target[3:7, 0], 0.045)               # the span's mean, constant
    np.testing.assert_allclose(target[[2, 7], 0], 0.045)            # blends take the nearest span's
    assert (target[w == 0] == 0).all()
    # a short window follows a foot that pivots slowly
    _, t2 = F.lock_plan(c, pos, blend=2, half_window=1)
    np.testing.assert_allclose(t2[3:7, 0], [0.035, 0.04, 0.05, 0.055])


def test_root_correction_interpolates_the_depth_across_a_flight():
    T = 10
    w = np.zeros((T, 2))
    w[:3] = 1
    w[7:] = 1
    dist = np.array([3.0, 3.0, 3.0, 3.1, 3.3, 3.2, 3.1, 3.0, 3.0, 3.0])   # pumps in the air
    c = F.root_correction(w, dist, max_gap=6)
    np.testing.assert_allclose(dist + c, 3.0)
    np.testing.assert_allclose(c[w.sum(1) > 0], 0.0)                    # planted: left alone
    jump = np.array([3.0, 3.0, 3.0, 3.2, 3.5, 3.3, 3.2, 3.4, 3.4, 3.4])  # lands 0.4 m further
    np.testing.assert_allclose((jump + F.root_correction(w, jump, max_gap=6))[2:8], np.linspace(3.0, 3.4, 6))
    np.testing.assert_allclose(F.root_correction(w, dist, max_gap=3), 0.0)   # flight too long: left alone
    track = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])                     # another person from frame 5 on
    np.testing.assert_allclose(F.root_correction(w, dist, max_gap=6, track=track), 0.0)   # not joined
    np.testing.assert_allclose(F.root_correction(w, dist, max_gap=6, track=np.zeros(T, int)), c)


def _leg_chain(rng, B):
    """Random poses of the SMPL-H skeleton (bent knees) with their rest joints and FK."""
    from model_runtime.models.load import load_body_model

    rest = np.broadcast_to(load_body_model("builtin").rest_joints(), (B, 52, 3)).copy()
    rot = np.tile(np.eye(3), (B, 52, 1, 1))
    rot[:, 0] = rotations.axis_angle_to_matrix(rng.normal(0, 0.3, (B, 3)))
    for j in (1, 2):
        rot[:, j] = rotations.axis_angle_to_matrix(rng.normal(0, 0.3, (B, 3)))
    for j in (4, 5):
        rot[:, j] = rotations.axis_angle_to_matrix(np.c_[rng.uniform(0.2, 1.2, B), np.zeros((B, 2))])
    for j in (7, 8):
        rot[:, j] = rotations.axis_angle_to_matrix(rng.normal(0, 0.2, (B, 3)))
    return rot, rest


def test_two_bone_ik_reaches_the_target_and_keeps_the_foot():
    rng = np.random.default_rng(1)
    B = 64
    rot, rest = _leg_chain(rng, B)
    J, G, _ = forward_kinematics_rt(rot, rest, PARENTS)
    for side in (0, 1):
        h, k, a = F.HIPS[side], F.KNEES[side], F.ANKLES[side]
        target = J[:, a] + rng.normal(0, 0.03, (B, 3))
        new = F.apply_leg_ik(rot, G, J[:, h], J[:, k], J[:, a], target, side)
        J2, G2, _ = forward_kinematics_rt(new, rest, PARENTS)
        reach = (np.linalg.norm(J[:, k] - J[:, h], axis=-1) + np.linalg.norm(J[:, a] - J[:, k], axis=-1))
        ok = np.linalg.norm(target - J[:, h], axis=-1) < reach - 1e-3
        assert ok.mean() > 0.5
        np.testing.assert_allclose(J2[ok, a], target[ok], atol=1e-6)
        # out of reach: a straight leg pointing at the target
        d = (target - J[:, h]) / np.linalg.norm(target - J[:, h], axis=-1, keepdims=True)
        np.testing.assert_allclose(J2[~ok, a], J[~ok, h] + d[~ok] * (reach[~ok, None] - 1e-4), atol=5e-4)
        for p, c in ((h, k), (k, a)):
            np.testing.assert_allclose(np.linalg.norm(J2[:, c] - J2[:, p], axis=-1),
                                       np.linalg.norm(J[:, c] - J[:, p], axis=-1), atol=1e-9)
        np.testing.assert_allclose(G2[:, a], G[:, a], atol=1e-9)         # the foot keeps its orientation
        other = [j for j in range(52) if j not in (h, k, a)]
        np.testing.assert_allclose(new[:, other], rot[:, other])
        # a knee that may not bend or straighten keeps the hip-ankle distance (the ankle lands on
        # the hip-target line); one that may by 2 cm moves off or towards that line by at most that
        lim = F.apply_leg_ik(rot, G, J[:, h], J[:, k], J[:, a], target, side, max_knee_shift=0.0)
        J3, _, _ = forward_kinematics_rt(lim, rest, PARENTS)
        np.testing.assert_allclose(np.linalg.norm(J3[:, a] - J3[:, h], axis=-1),
                                   np.linalg.norm(J[:, a] - J[:, h], axis=-1), atol=1e-6)

        def bend(J):
            u = (J[:, a] - J[:, h]) / np.linalg.norm(J[:, a] - J[:, h], axis=-1, keepdims=True)
            hk = J[:, k] - J[:, h]
            return np.linalg.norm(hk - (hk * u).sum(-1, keepdims=True) * u, axis=-1)

        J4, _, _ = forward_kinematics_rt(F.apply_leg_ik(rot, G, J[:, h], J[:, k], J[:, a], target, side,
                                                        max_knee_shift=0.02), rest, PARENTS)
        assert np.abs(bend(J4) - bend(J)).max() <= 0.02 + 1e-6
        assert np.abs(bend(J4) - bend(J)).max() > 0.015          # (the random targets ask for more)


def test_leg_ik_swivel_keeps_the_knee_on_its_viewing_ray():
    """With a swivel allowed, the knee turns about the hip-target line towards its own viewing ray
    (camera at the origin, the person 3 m in front): the ankle still reaches the target, the knee
    lands nearer the ray than without the swivel (never farther; the circle often passes the ray
    at a distance, so the median gain is 30 %, not all) and turns by at most the cap."""
    rng = np.random.default_rng(2)
    B = 128
    rot, rest = _leg_chain(rng, B)
    J, G, _ = forward_kinematics_rt(rot, rest, PARENTS)
    J = J + np.array([0.0, 0.0, 3.0])                      # in front of the camera
    cap = np.radians(30.0)

    def ray_dist(P, Q):                                    # distance of P from the ray through Q
        r = Q / np.linalg.norm(Q, axis=-1, keepdims=True)
        return np.linalg.norm(P - (P * r).sum(-1, keepdims=True) * r, axis=-1)

    for side in (0, 1):
        h, k, a = F.HIPS[side], F.KNEES[side], F.ANKLES[side]
        target = J[:, a] + rng.normal(0, 0.015, (B, 3))
        plain = F.apply_leg_ik(rot, G, J[:, h], J[:, k], J[:, a], target, side)
        turned = F.apply_leg_ik(rot, G, J[:, h], J[:, k], J[:, a], target, side, max_swivel=cap)
        Jp = forward_kinematics_rt(plain, rest, PARENTS)[0] + [0.0, 0.0, 3.0]
        Jt = forward_kinematics_rt(turned, rest, PARENTS)[0] + [0.0, 0.0, 3.0]
        np.testing.assert_allclose(Jt[:, a], Jp[:, a], atol=1e-6)          # the same ankle
        np.testing.assert_allclose(np.linalg.norm(Jt[:, k] - Jt[:, h], axis=-1),
                                   np.linalg.norm(J[:, k] - J[:, h], axis=-1), atol=1e-9)
        before, after = ray_dist(Jp[:, k], J[:, k]), ray_dist(Jt[:, k], J[:, k])
        assert (after <= before + 1e-6).all()
        assert np.median(after) < 0.8 * np.median(before)
        # the turn about the hip-ankle line is within the cap
        axis = Jt[:, a] - Jt[:, h]
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)

        def across(P, hip, axis):
            v = P - hip
            v = v - (v * axis).sum(-1, keepdims=True) * axis
            return v / np.linalg.norm(v, axis=-1, keepdims=True)
        angle = np.arccos(np.clip((across(Jp[:, k], Jt[:, h], axis) * across(Jt[:, k], Jt[:, h], axis)).sum(-1), -1, 1))
        assert angle.max() <= cap + 1e-6


def test_swivel_towards_ray_finds_the_nearest_point_of_the_circle():
    """A circle about the z axis at z = 3 with the ray through (0.1, 0.1, 3): the nearest point is at
    45 degrees from the x axis, found from a pole on x within a 60-degree cap (a 30-degree cap
    stops at 30 degrees)."""
    centre = np.array([[0.0, 0.0, 3.0]])
    radius, axis, pole = np.array([[0.2]]), np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0]])
    point = np.array([[0.1, 0.1, 3.0]])
    d = F.swivel_towards_ray(centre, radius, axis, pole, point, np.radians(60.0))
    np.testing.assert_allclose(d[0], [np.sqrt(0.5), np.sqrt(0.5), 0.0], atol=2e-3)
    d = F.swivel_towards_ray(centre, radius, axis, pole, point, np.radians(30.0))
    np.testing.assert_allclose(d[0], [np.cos(np.radians(30)), np.sin(np.radians(30)), 0.0], atol=1e-9)


def test_knee_shift_reach_keeps_a_straight_knee_and_lets_a_bent_one_reach():
    a = b = np.array([[0.4]])
    hip = np.zeros((1, 3))
    for bend, lo_cm, hi_cm in ((0.02, 0.0, 0.5), (0.2, 2.0, 4.0)):       # knee off the hip-ankle line (m)
        c = 2 * np.sqrt(0.16 - bend ** 2)
        knee, ankle = np.array([[bend, -c / 2, 0.0]]), np.array([[0.0, -c, 0.0]])
        c_min, c_max = F.knee_shift_reach(a, b, knee, hip, ankle, 0.02)
        assert c_min[0, 0] < c < c_max[0, 0] <= 0.8
        # a nearly straight leg may hardly lengthen (the knee would swing by centimetres per
        # millimetre); a bent one lengthens or shortens by about the knee's shift
        assert lo_cm <= 100 * (c_max[0, 0] - c) <= hi_cm and 100 * (c - c_min[0, 0]) >= 0.2


def _standing_records(T: int, fps: float, noise: float, sink: float = 0.0):
    """A person standing still 3 m in front of the camera (knees a little bent), both feet planted and seen
    still by the detector, whose fitted root moves across the viewing ray by ``noise`` m (standard
    deviation) frame to frame (the image-aligned fit's per-frame noise) and sinks by ``sink`` m over
    the clip (the fit's depth drifting along a tilted ray); -> (records, stage arguments)."""
    import types

    from model_runtime.models.load import load_body_model

    body = load_body_model("builtin")
    betas = np.zeros(16)
    rot = np.tile(np.eye(3), (1, 52, 1, 1))
    rot[0, F.HIPS] = rotations.axis_angle_to_matrix(np.array([-0.15, 0.0, 0.0]))   # knees a little bent
    rot[0, F.KNEES] = rotations.axis_angle_to_matrix(np.array([0.3, 0.0, 0.0]))
    joints = forward_kinematics_rt(rot, body.rest_joints(betas)[None], body.parents)[0][0]
    quat = rotations.matrix_to_quat_wxyz(rot[0])
    K = np.array([[1000.0, 0, 640], [0, 1000.0, 360], [0, 0, 1]])
    base = np.array([0.0, 0.2, 3.0])
    kp = np.zeros((24, 3))
    feet3d = joints[F.ANKLES] + base                                 # the detector: the still feet
    for f in range(2):
        p = feet3d[f] @ K.T
        kp[F.FOOT_ROWS[f], :2] = p[:2] / p[2] + np.array([[0, 0], [-10, 5], [20, 5]])
    recs = []
    rng = np.random.default_rng(4)
    for t in range(T):
        transl = base + np.array([rng.normal(0.0, noise), sink * t / T, 0.0])
        vis = np.ones(66)
        if t in (T // 4, T // 2):                                    # a foot hidden for a frame: two
            vis[F.FOOT_ROWS[int(t == T // 2)]] = 0.0                  # runs each, enough for a plane
        recs.append(types.SimpleNamespace(
            index=t, valid=True, joints=joints.copy(), transl=transl, quat=quat.copy(),
            body_2d=kp.copy(), keypoint_visibility=vis, joint_confidence=np.ones(52), betas=betas, scale=1.0))
    return recs, (body.rest_joints, body.parents, lambda: K, fps, F.default_ankle_height(body))


@pytest.mark.parametrize("fps", [12.0, 30.0])
def test_lock_holds_a_planted_foot_through_the_fits_per_frame_noise(fps, monkeypatch):
    """The lock's image bound is taken from where the fit put the ankle on average over
    +-BOUND_HALF_S, not frame by frame: a root that jumps by 2 cm (more than the bound) from frame
    to frame leaves the locked feet nearly still at 12 and 30 fps, where a bound from each frame's
    own ankle drags them along by a centimetre a frame."""
    from model_runtime.capture.feet_stage import FootStage

    def run():
        recs, args = _standing_records(round(4 * fps), fps, 0.02)
        stage = FootStage(*args)
        out = []
        for i in range(0, len(recs), 4):
            out += stage.push(recs[i:i + 4])
        out += stage.flush()
        c = np.stack([r.foot_contact for r in out])
        ankles = np.stack([r.joints[F.ANKLES] + r.transl for r in out])
        both = c[1:] & c[:-1]
        return c, np.linalg.norm(np.diff(ankles, axis=0), axis=-1)[both].mean() * 1000

    contact, slide = run()
    assert contact.mean() > 0.8                                     # planted but where hidden
    monkeypatch.setattr(F, "BOUND_HALF_S", 0.0)
    _, slide_per_frame_bound = run()
    assert slide < 3.0 and slide_per_frame_bound > 3 * slide, (slide, slide_per_frame_bound)


def test_labels_and_plane_do_not_depend_on_how_the_frames_arrive():
    """The first ground plane comes from the frames up to the PLANE_MIN_FRAMES-th still foot (and
    a third planted run), not from the frames there happen to be at a push: the capture's batches
    (the image-aligned fit's window, then a few frames at a time) no longer change the plane and
    the labels made under it.  A fit rising 30 cm over 8 s puts the later frames near the contact
    height threshold, where a plane fitted on more or fewer of the early frames decides."""
    from model_runtime.capture.feet_stage import FootStage

    results = []
    for batch in (1, 4, 17, 29, 200):
        recs, args = _standing_records(240, 30.0, 0.0, sink=-0.3)
        stage = FootStage(*args)
        out = []
        for i in range(0, len(recs), batch):
            out += stage.push(recs[i:i + batch])
        out += stage.flush()
        results.append((np.stack([r.foot_contact for r in out]), stage.ground_plane,
                        np.stack([r.quat for r in out])))
    c0, p0, q0 = results[0]
    assert 0.2 < c0.mean() < 0.9                                      # the sinking feet are let go
    for c, p, q in results[1:]:
        np.testing.assert_array_equal(c, c0)
        np.testing.assert_allclose(p, p0, atol=1e-6)
        np.testing.assert_allclose(q, q0, atol=1e-9)


# --------------------------------------------------------------------------- capture file
def test_capture_file_ground_plane_optional_and_validated(tmp_path):
    cap = cf.load_capture(GT)                   # a version-1 file without the field
    np.testing.assert_array_equal(cap["ground_plane"], np.zeros(4))
    data = {k: np.asarray(v) for k, v in cap.data.items()}
    data["ground_plane"] = np.array([0.0, -2.0, 0.0, 1.0], np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **data)
    with pytest.raises(ModelFileError, match="ground_plane.*length 1"):
        cf.load_capture(bad)
    data["ground_plane"] = np.array([0.0, -1.0, 0.0, 1.0], np.float32)
    good = tmp_path / "good.npz"
    np.savez(good, **data)
    np.testing.assert_array_equal(cf.load_capture(good)["ground_plane"], [0, -1, 0, 1])


# --------------------------------------------------------------------------- the capture pipeline
def _gt_feet():
    """True ankles ``(T, 2, 3)`` in camera space, the true floor (n, d) and the true planted
    frames of the demo clip: the ankle moves under 0.15 m/s and is within 8 cm of its lowest (the
    thrower rises onto his toes and holds there: planted, ankle 6 cm up)."""
    from model_runtime.models.load import load_body_model

    gt = np.load(GT)
    body = load_body_model("builtin")
    rot = rotations.rot6d_to_matrix(gt["pose_6d"].astype(np.float64))
    T = len(rot)
    rest = np.broadcast_to(body.rest_joints(gt["betas"].astype(np.float64)) * float(gt["scale"]), (T, 52, 3))
    J, _, _ = forward_kinematics_rt(rot, np.ascontiguousarray(rest), PARENTS)
    ankles = J[:, F.ANKLES] + gt["transl"][:, None]
    verts, _, _ = body.forward(gt["betas"][None].astype(np.float64), rot[:1], transl=gt["transl"][:1].astype(np.float64),
                               scale=np.array([float(gt["scale"])]))
    floor_y = verts[0, :, 1].max()                   # camera level (rendered so): the floor is y = const
    n, d = np.array([0.0, -1.0, 0.0]), floor_y
    h = ankles @ n + d
    speed = np.linalg.norm(np.gradient(ankles, axis=0), axis=-1) * float(gt["fps"])
    planted = (h < h.min(0) + 0.08) & (speed < 0.15)
    return ankles, np.r_[n, d], planted


@pytest.fixture(scope="module")
def demo_captures(tmp_path_factory):
    """The replayed demo clip captured with and without the feet stage, and waist-up."""
    from model_runtime.capture.pipeline import CapturePipeline, build_pipeline
    from model_runtime.core.options import CaptureOptions
    from tests.test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording

    class WaistUp(ReplayDetector):
        def recorded(self, i):
            det = super().recorded(i)
            rows = [BODY_KEYPOINT_NAMES.index(f"{s}_{n}") for s in ("left", "right")
                    for n in ("knee", "ankle", "heel", "big_toe")]
            det.body_2d[rows, 1] = 1.5 * self.size[1]
            return det

    base = build_pipeline(CaptureOptions(device="cpu", face=False), detector=ReplayDetector())
    out = {}
    tmp = tmp_path_factory.mktemp("feet")
    for name, det, feet in (("feet", ReplayDetector(), True), ("nofeet", ReplayDetector(), False),
                            ("waist", WaistUp(), True)):
        opts = CaptureOptions(device="cpu", face=False, feet=feet)
        recs: list = []
        CapturePipeline(det, base.ik, base.body, None, opts).run(GreyFrames(_load_recording()), tmp / f"{name}.npz",
                                                                 on_frame=recs.append)
        out[name] = cf.load_capture(tmp / f"{name}.npz")
    return out


def _posed_ankles(cap):
    from model_runtime.evals.video import PosedCapture

    return PosedCapture(cap).joints[:, F.ANKLES]


def test_pipeline_ground_plane_is_the_floor(demo_captures):
    _, truth, _ = _gt_feet()
    plane = demo_captures["feet"]["ground_plane"].astype(np.float64)
    assert abs(np.linalg.norm(plane[:3]) - 1) < 1e-3
    assert np.degrees(np.arccos(np.clip(plane[:3] @ truth[:3], -1, 1))) < 8.0
    # the camera's height above it over the person's depth (a monocular capture knows the scene up
    # to scale: the clip's alpha is ~3 % small, its root ~12 cm off): the true ratio within 8 %
    cap = demo_captures["feet"]
    gt = np.load(GT)
    ratio = plane[3] / np.median(cap["transl"][:, 2])
    ratio_true = truth[3] / np.median(gt["transl"][:, 2])
    assert abs(ratio / ratio_true - 1) < 0.08, (ratio, ratio_true)
    # the planted ankles stand on it at the model's ankle height (within 2 cm)
    from model_runtime.models.load import load_body_model

    h_a = F.ankle_height_above_soles(load_body_model("builtin"), cap["betas"]) * float(cap["scale"])
    height = _posed_ankles(cap) @ plane[:3] + plane[3]
    assert abs(np.median(height[cap["foot_contact"]]) - h_a) < 0.02


def test_pipeline_planted_feet_stay_put_and_agree_with_the_truth(demo_captures):
    _, _, planted = _gt_feet()
    cap, ref = demo_captures["feet"], demo_captures["nofeet"]
    fc = cap["foot_contact"]
    assert fc.any() and not ref["foot_contact"].any() and not ref["ground_plane"].any()
    # labels against the truth: most labelled frames are truly planted, most planted frames found
    precision = (fc & planted).sum() / fc.sum()
    recall = (fc & planted).sum() / planted.sum()
    assert precision > 0.8 and recall > 0.5, (precision, recall)
    # horizontal slide over consecutive labelled frames: <= 3 mm, and below the capture without
    n = cap["ground_plane"][:3].astype(np.float64)
    P = np.eye(3) - np.outer(n, n)

    def slide(ankles):
        step = np.linalg.norm(np.diff(ankles, axis=0) @ P.T, axis=-1)
        both = fc[1:] & fc[:-1]
        return step[both].mean() * 1000

    with_feet, without = slide(_posed_ankles(cap)), slide(_posed_ankles(ref))
    assert with_feet <= 3.0 and with_feet < 0.5 * without, (with_feet, without)


def test_pipeline_waist_up_gets_no_contact(demo_captures):
    cap = demo_captures["waist"]
    assert not cap["foot_contact"].any() and not cap["ground_plane"].any()


def test_pipeline_cancel_keeps_frames_with_feet(tmp_path):
    """Cancelled while the feet stage holds frames (cancelled once 30 frames are written; the fitting
    runs behind the detector, so the cancel comes from the written frames, not from the detector):
    the held frames are finished and kept, finite, with their contact labels."""
    import threading

    from model_runtime.capture.pipeline import build_pipeline
    from model_runtime.core.errors import CancelledError
    from model_runtime.core.options import CaptureOptions
    from tests.test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording

    cancel = threading.Event()

    def stop_at_30(done, total, fps):
        if done >= 30:
            cancel.set()

    pipe = build_pipeline(CaptureOptions(device="cpu", face=False), detector=ReplayDetector())
    with pytest.raises(CancelledError, match="kept in") as e:
        pipe.run(GreyFrames(_load_recording()), tmp_path / "c.npz", cancel=cancel, on_progress=stop_at_30)
    part = cf.load_capture(e.value.partial_output)
    assert 30 < part.num_frames < 81 and part["valid"].all()
    assert part["foot_contact"].any() and np.isfinite(part["transl"]).all()


# --------------------------------------------------------------------------- written as they come, rewritten when locked
@pytest.mark.parametrize("mode", ["interpolate", "hold"])
def test_a_gap_filled_again_matches_the_streaming_fill(mode):
    """``GapFiller.fill_gap`` (used when the feet stage locks a record next to a gap after the gap
    was filled) gives what the streaming fill would have given with the changed records: leading,
    short, long (> max_gap: blocks held while waiting, the rest interpolated) and trailing gaps."""
    from model_runtime.capture.filters import GapFiller

    rng = np.random.default_rng(3)
    T = 40
    valid = np.ones(T, bool)
    valid[[0, 1]] = False
    valid[5:8] = False
    valid[12:25] = False                                            # 13 frames, max_gap 4
    valid[37:] = False

    def records(x, q):
        return [dict(valid=bool(v), time=t / 30.0, x=x[t].copy(), q=q[t].copy()) for t, v in enumerate(valid)]

    def streamed(recs):
        f = GapFiller(mode, quat_keys=("q",), linear_keys=("x",), max_gap=4)
        out = [o for r in recs for o in f.push(r)] + f.flush()
        assert [id(o) for o in out] == [id(r) for r in recs]
        return recs

    def unit(a):
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    x0, q0 = rng.normal(size=(T, 3)), unit(rng.normal(size=(T, 2, 4)))
    first = streamed(records(x0, q0))
    x1, q1 = x0 + rng.normal(size=(T, 3)), unit(q0 + 0.3 * rng.normal(size=(T, 2, 4)))   # the records locked later
    for r, x, q in zip(first, x1, q1):
        if r["valid"]:
            r["x"], r["q"] = x.copy(), q.copy()
    f = GapFiller(mode, quat_keys=("q",), linear_keys=("x",), max_gap=4)
    edges = np.flatnonzero(np.diff(np.r_[1, valid.astype(int), 1]))
    for i, j in zip(edges[::2], edges[1::2]):
        f.fill_gap(first[i:j], first[i - 1] if i else None, first[j] if j < T else None)
    ref = streamed(records(x1, q1))
    np.testing.assert_allclose([r["x"] for r in first], [r["x"] for r in ref], atol=1e-12)
    np.testing.assert_allclose([r["q"] for r in first], [r["q"] for r in ref], atol=1e-12)


def test_pipeline_writes_frames_as_they_come_and_rewrites_the_locked_span(tmp_path):
    """With the feet stage on, every frame reported done is on disk but the unflushed chunk (as
    without it), the frames it locks later are rewritten in place (the file ends as the final
    records), and a gap next to a frame locked after the gap was filled is filled again from it."""
    from model_runtime.capture.filters import slerp
    from model_runtime.capture.pipeline import build_pipeline
    from model_runtime.core.options import CaptureOptions
    from tests.test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording

    out = tmp_path / "w.npz"
    opts = CaptureOptions(device="cpu", face=False)
    assert opts.feet
    pipe = build_pipeline(opts, detector=ReplayDetector(drop_person={55, 56}))
    first, recs, behind = {}, [], []

    def on_frame(r):
        first[r.index] = (r.quat.copy(), r.foot_contact.copy())
        recs.append(r)

    def on_progress(done, total, fps):
        on_disk = sum(int(p.name.split("_")[2][:5]) for p in cf.partial_dir(out).glob("chunk_*.npz"))
        behind.append(done - on_disk)

    pipe.run(GreyFrames(_load_recording()), out, on_frame=on_frame, on_progress=on_progress)
    assert max(behind) <= opts.chunk_frames - 1, max(behind)
    cap = cf.load_capture(out)
    legs = np.r_[F.HIPS, F.KNEES]
    changed = [r.index for r in recs if not np.allclose(first[r.index][0][legs], r.quat[legs])]
    assert len(changed) > 10                                         # locked after they were written ...
    final = np.stack([r.quat for r in recs])
    got = rotations.matrix_to_quat_wxyz(rotations.rot6d_to_matrix(cap["pose_6d"].astype(np.float64)))
    got = np.where((got * final).sum(-1, keepdims=True) < 0, -got, got)
    np.testing.assert_allclose(got, final, atol=2e-3)                # ... and rewritten where they are
    np.testing.assert_array_equal(cap["foot_contact"], np.stack([r.foot_contact for r in recs]))
    # the gap (frames 55-56, no person): filled from its neighbours as they are in the end
    idx = {r.index: i for i, r in enumerate(recs)}
    a, g, b = idx[54], [idx[55], idx[56]], idx[57]
    assert not cap["valid"][g].any() and cap["valid"][[a, b]].all()
    assert 54 in changed or 57 in changed                            # a neighbour was locked after the fill
    w = np.array([1 / 3, 2 / 3])[:, None]
    np.testing.assert_allclose(np.stack([recs[i].quat for i in g]), slerp(final[a][None], final[b][None], w),
                               atol=1e-9)


def test_decided_frames_are_on_disk_locked_while_the_capture_runs(tmp_path, monkeypatch):
    """At every progress event the capture file's written chunks hold every frame as the pipeline
    now has it: a frame the feet stage locked after it was written is already rewritten there (what
    a kill at that moment keeps).  Shorter windows and blocks (module constants, as
    ``tools/replay_feet.py --set`` sets them) so that spans are decided within the 81-frame clip."""
    from model_runtime.capture.pipeline import build_pipeline
    from model_runtime.core.options import CaptureOptions
    from tests.test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording

    import shutil

    monkeypatch.setattr(F, "LOCK_DEPTH_HALF_WINDOW_S", 0.5)
    monkeypatch.setattr(F, "MAX_GAP_S", 0.2)
    monkeypatch.setattr(F, "LOCK_BLOCK", 8)
    out = tmp_path / "d.npz"
    pipe = build_pipeline(CaptureOptions(device="cpu", face=False), detector=ReplayDetector())
    first, recs, checked = {}, [], []

    def on_frame(r):
        first[r.index] = r.quat.copy()
        recs.append(r)

    def on_progress(done, total, fps):
        if done == total:
            return
        snap = tmp_path / f"snap{done}.npz"                             # a kill now: the chunks on disk
        shutil.copytree(cf.partial_dir(out), cf.partial_dir(snap))
        disk = np.load(cf.recover(snap))
        n = len(disk["valid"])
        if n == 0:
            return
        now = np.stack([r.quat for r in recs[:n]])
        got = rotations.matrix_to_quat_wxyz(rotations.rot6d_to_matrix(disk["pose_6d"].astype(np.float64)))
        got = np.where((got * now).sum(-1, keepdims=True) < 0, -got, got)
        np.testing.assert_allclose(got, now, atol=2e-3)
        np.testing.assert_array_equal(disk["foot_contact"], np.stack([r.foot_contact for r in recs[:n]]))
        relocked = [i for i, r in enumerate(recs[:n]) if np.abs(first[r.index] - r.quat).max() > 1e-3]
        checked.append(len(relocked))

    pipe.run(GreyFrames(_load_recording()), out, on_frame=on_frame, on_progress=on_progress)
    assert checked and max(checked) > 0, checked                      # locked frames rewritten mid-capture
