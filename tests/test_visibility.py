"""Visibility (issue 10): unseen parts are never invented.

* pure functions of ``capture/visibility.py``: keypoint visibility (out of frame, not detected),
  hysteresis, joint confidence from the keypoints that define a joint, the neutral pose (posed
  with the real body model), held-then-neutral blending, observed joints below a replaced one;
* capture file version 2: a version-1 file (and the shipped ``samples/demo_clip_gt.npz``) loads with
  the documented defaults, a bad version-2 value is refused naming its field, a version-1 writer's
  unfinished capture is recovered;
* the capture pipeline on the real MediaPipe detections of the demo clip (``tests/data``) with the
  legs moved below the image: legs unseen, out of the IK's input, neutral (standing).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_runtime.capture.align_clip import MAX_HALF_WINDOW
from model_runtime.capture import visibility as V
from model_runtime.core import capture_file as cf
from model_runtime.core import rotations
from model_runtime.core.errors import ModelFileError
from model_runtime.core.lbs import forward_kinematics
from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES, JOINT_NAMES

REPO = Path(__file__).resolve().parents[1]
J = {n: i for i, n in enumerate(JOINT_NAMES)}
KP = {n: i for i, n in enumerate(V.KEYPOINT_NAMES)}
LEGS = [J[f"{s}_{n}"] for s in ("left", "right") for n in ("hip", "knee", "ankle", "foot")]
LEG_KEYPOINTS = [KP[f"{s}_{n}"] for s in ("left", "right") for n in ("knee", "ankle", "heel", "big_toe")]


def _rot(axis: str, deg: float) -> np.ndarray:
    return rotations.axis_angle_to_matrix(np.radians(deg) * np.eye(3)["xyz".index(axis)])


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(rotations.geodesic_angle(a, b))


# --------------------------------------------------------------------------- keypoints
def test_keypoint_visibility_out_of_frame_and_undetected():
    """Inside: the confidence; outside: lowered linearly, 0 beyond FRAME_MARGIN of the longer side;
    not detected or not finite: 0; confidences above 1 are clipped."""
    m = V.FRAME_MARGIN * 640
    kp = np.array([[100, 100, 0.8], [-0.5 * m, 100, 0.8], [320, 480 + 0.25 * m, 1.0], [320, 480 + 1.01 * m, 1.0],
                   [100, 100, 0.0], [np.nan, 100, 0.9], [100, 100, 1.7]])
    vis = V.keypoint_visibility(kp, (640, 480))
    assert vis.dtype == np.float32
    np.testing.assert_allclose(vis, [0.8, 0.4, 0.75, 0.0, 0.0, 0.0, 1.0], atol=1e-6)
    batch = V.keypoint_visibility(np.stack([kp, kp]), (640, 480))
    np.testing.assert_array_equal(batch, np.stack([vis, vis]))


def test_hysteresis_ignores_flicker():
    """On at >= SEEN_ON for ON_FRAMES frames, off below SEEN_OFF for OFF_FRAMES frames; values in
    between keep the state; a one- or two-frame dropout toggles nothing; batches chain."""
    v = np.array([0.9, 0.1, 0.9, 0.1, 0.1, 0.9, 0.3, 0.1, 0.1, 0.1, 0.1, 0.6, 0.4, 0.6, 0.6, 0.3])
    want = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1], bool)
    assert V.OFF_FRAMES == 3 and V.ON_FRAMES == 2
    np.testing.assert_array_equal(V.KeypointHysteresis()(v[:, None])[:, 0], want)
    h = V.KeypointHysteresis()
    parts = [h(v[a:b, None])[:, 0] for a, b in ((0, 4), (4, 5), (5, 16))]
    np.testing.assert_array_equal(np.concatenate(parts), want)
    np.testing.assert_array_equal(V.KeypointHysteresis()(np.array([[0.3], [0.6], [0.6]]))[:, 0], [0, 0, 1])


def test_joint_confidence_needs_every_defining_keypoint():
    """A knee needs hip, knee and ankle; a hip needs pelvis, hip and knee; the pelvis is seen through
    the hips or the shoulders; a seen keypoint below SEEN_OFF on this frame is not usable."""
    vis = np.full(V.NUM_KEYPOINTS, 0.9)
    seen = np.ones(V.NUM_KEYPOINTS, bool)
    vis[KP["left_ankle"]] = 0.6
    c = V.joint_confidence(vis, seen)
    assert c.shape == (52,) and c[J["left_knee"]] == pytest.approx(0.6) and c[J["left_hip"]] == pytest.approx(0.9)
    seen[KP["left_ankle"]] = False
    c = V.joint_confidence(vis, seen)
    assert c[J["left_knee"]] == 0 and c[J["left_ankle"]] == 0 and c[J["left_hip"]] > 0 and c[J["right_knee"]] > 0
    seen[[KP["left_hip"], KP["right_hip"]]] = False
    c = V.joint_confidence(vis, seen)
    assert c[J["left_hip"]] == 0 and c[J["pelvis"]] == pytest.approx(0.9)      # through the shoulders
    seen[KP["left_shoulder"]] = False
    c = V.joint_confidence(vis, seen)
    assert c[J["pelvis"]] == 0 and c[J["left_collar"]] == 0 and c[J["right_collar"]] > 0
    assert (V.joint_seen(seen) == (c > 0)).all()
    vis[KP["right_elbow"]] = 0.1         # seen by the hysteresis, a dropout on this frame
    use = V.usable(vis, seen)
    assert seen[KP["right_elbow"]] and not use[KP["right_elbow"]]
    c = V.joint_confidence(vis, use)
    assert c[J["right_elbow"]] == 0 and V.joint_seen(seen)[J["right_elbow"]] and c[J["right_shoulder"]] == 0
    hands = V.joint_confidence(np.full((3, V.NUM_KEYPOINTS), 0.9), np.ones((3, V.NUM_KEYPOINTS), bool))
    assert hands.shape == (3, 52) and (hands > 0).all()


def test_ik_input_keeps_only_seen_limbs_and_the_torso():
    conf = np.full((2, V.NUM_KEYPOINTS), 0.7)
    seen = np.zeros((2, V.NUM_KEYPOINTS), bool)
    seen[0, KP["left_elbow"]] = True
    out = V.gated_confidence(conf, seen)
    torso = [KP[n] for n in V.IK_TORSO]
    assert (out[:, torso] == 0.7).all() and out[0, KP["left_elbow"]] == 0.7
    assert out.sum() == pytest.approx(0.7 * (2 * len(torso) + 1))


# --------------------------------------------------------------------------- neutral pose
@pytest.fixture(scope="module")
def body():
    from model_runtime.models.load import load_body_model

    return load_body_model()


def test_neutral_pose_stands_with_relaxed_arms(body):
    """Posed with the built-in body model (model space, pelvis identity): straight standing legs,
    hands below the shoulders at the sides, elbows slightly bent forward, fingers curled towards
    the palm, thumbs straight; in camera axes the pelvis is upright and faces the camera."""
    R = V.neutral_pose()
    np.testing.assert_allclose(R[0], np.diag([1.0, -1.0, -1.0]))
    np.testing.assert_allclose(R[LEGS], np.tile(np.eye(3), (len(LEGS), 1, 1)))
    R[0] = np.eye(3)
    p = forward_kinematics(R[None], body.rest_joints()[None], body.parents)[0][0]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        sh, el, wr = (p[J[f"{side}_{n}"]] for n in ("shoulder", "elbow", "wrist"))
        assert wr[1] < el[1] < sh[1] - 0.15                               # hanging down
        assert sign * (wr[0] - sh[0]) < 0.12                               # at the side, not spread
        assert wr[2] > el[2]                                               # forearm slightly forward
        tip, base = p[J[f"{side}_middle3"]], p[J[f"{side}_middle1"]]
        rest_dir = body.rest_joints()[J[f"{side}_middle3"]] - body.rest_joints()[J[f"{side}_middle1"]]
        assert 20 < np.degrees(np.arccos(np.dot(tip - base, rest_dir) / np.linalg.norm(tip - base)
                                         / np.linalg.norm(rest_dir))) < 60   # bent, not a fist
        np.testing.assert_allclose(V.NEUTRAL_POSE[J[f"{side}_thumb2"]], np.eye(3))
    assert abs(p[J["left_ankle"], 0] - p[J["left_hip"], 0]) < 0.05            # legs straight down


# --------------------------------------------------------------------------- blending
def _walk(seen_rows, rot, fps=30.0, batch=None):
    """Run an UnseenBlender over ``seen_rows (T, 52)`` and ``rot (T, 52, 3, 3)``, in batches."""
    b = V.UnseenBlender()
    T = len(seen_rows)
    times = np.arange(T) / fps
    step = batch or T
    outs = [b(rot[a:a + step], seen_rows[a:a + step], times[a:a + step]) for a in range(0, T, step)]
    return tuple(np.concatenate(x) for x in zip(*outs))


def test_unseen_from_the_start_is_neutral_at_once():
    T = 5
    rot = np.tile(_rot("x", 70.0), (T, 52, 1, 1))
    seen = np.ones((T, 52), bool)
    seen[:, LEGS] = False
    out, w, src = _walk(seen, rot)
    np.testing.assert_allclose(out[:, LEGS], np.broadcast_to(V.NEUTRAL_POSE[LEGS], (T, len(LEGS), 3, 3)), atol=1e-12)
    assert (src[:, LEGS] == V.SOURCE_NEUTRAL).all() and (w[:, LEGS] == 0).all()
    assert (src[:, J["spine1"]] == V.SOURCE_SEEN).all() and (w[:, J["spine1"]] == 1).all()
    np.testing.assert_allclose(out[:, J["spine1"]], rot[:, J["spine1"]])


def test_lost_joint_is_held_then_blends_to_neutral_and_back():
    """The left elbow is seen for 10 frames, unseen for 2 s, seen again: it holds its last seen
    rotation until HOLD_S after it was last seen, then blends to the neutral pose over BLEND_S
    (monotonically), and blends back to the observation once seen.  Batches of 7 give the same
    result as one batch."""
    fps, T = 30.0, 100
    e = J["left_elbow"]
    rot = np.tile(np.eye(3), (T, 52, 1, 1))
    rot[:, e] = [_rot("y", -60.0 - 0.5 * t) for t in range(T)]         # a moving observation
    seen = np.ones((T, 52), bool)
    seen[10:70, e] = False
    out, w, src = _walk(seen, rot, fps)
    neutral = V.NEUTRAL_POSE[e]
    blend_n = int(round(V.BLEND_S * fps))
    hold_end = 9 + int(round(V.HOLD_S * fps))                             # the last frame held as it was
    assert (src[:10, e] == V.SOURCE_SEEN).all() and (src[70:, e] == V.SOURCE_SEEN).all()
    assert (src[10:70, e] != V.SOURCE_SEEN).all() and (w[10:70, e] == 0).all()
    assert (src[10:hold_end + blend_n, e] == V.SOURCE_HELD).all() and (src[hold_end + blend_n + 1:70, e] == V.SOURCE_NEUTRAL).all()
    np.testing.assert_allclose(out[10:hold_end + 1, e], np.broadcast_to(rot[9, e], (hold_end - 9, 3, 3)), atol=1e-12)
    to_neutral = _angle_deg(out[hold_end:hold_end + blend_n + 2, e], neutral)
    assert (np.diff(to_neutral[:-1]) < 0).all() and to_neutral[-2] < 1e-6
    np.testing.assert_allclose(out[hold_end + blend_n + 1:70, e], np.broadcast_to(neutral, (70 - hold_end - blend_n - 1, 3, 3)),
                               atol=1e-9)
    # back in view: the observation's weight rises to 1 over BLEND_S, then the observation itself
    assert (np.diff(w[70:70 + blend_n, e]) > 0).all() and w[69 + blend_n, e] == pytest.approx(1.0)
    assert (np.diff(_angle_deg(out[69:69 + blend_n, e], rot[69:69 + blend_n, e])) < 0).all()
    np.testing.assert_allclose(out[69 + blend_n:, e], rot[69 + blend_n:, e], atol=1e-12)
    assert _angle_deg(out[1:, e], out[:-1, e]).max() < 20.0                # no jump (the blend speed)
    np.testing.assert_allclose(_walk(seen, rot, fps, batch=7)[0], out, atol=1e-12)
    seen[:, e] = True
    seen[14:, e] = False                   # lost at a batch boundary after steady batches: held too
    for batch in (None, 7):
        out, _, src = _walk(seen, rot, fps, batch=batch)
        assert (src[14:14 + int(V.HOLD_S * fps), e] == V.SOURCE_HELD).all()
        np.testing.assert_allclose(out[14:40, e], np.broadcast_to(rot[13, e], (26, 3, 3)), atol=1e-12)


def test_fingers_blend_faster_than_limbs():
    """A finger and an elbow lost for 2 s (neutral by then) come back: the finger's observation
    weight reaches 1 after BLEND_FINGERS_S, the elbow's after BLEND_S, both monotonically, in the
    same way in batches (fingers flicker in and out of the hand detector)."""
    fps, T = 30.0, 100
    f, e = J["right_index2"], J["left_elbow"]
    rot = np.tile(np.eye(3), (T, 52, 1, 1))
    rot[:, f] = [_rot("z", 60.0 + 0.2 * t) for t in range(T)]           # a curled finger
    rot[:, e] = [_rot("y", -60.0 - 0.2 * t) for t in range(T)]
    seen = np.ones((T, 52), bool)
    seen[10:70, [f, e]] = False
    out, w, src = _walk(seen, rot, fps)
    fast, slow = int(round(V.BLEND_FINGERS_S * fps)), int(round(V.BLEND_S * fps))
    assert fast < slow and (src[60:70, f] == V.SOURCE_NEUTRAL).all()
    assert (np.diff(w[70:70 + fast, f]) > 0).all() and w[69 + fast, f] == pytest.approx(1.0)
    assert w[69 + fast, e] < 1.0 and w[69 + slow, e] == pytest.approx(1.0)
    np.testing.assert_allclose(out[69 + fast:, f], rot[69 + fast:, f], atol=1e-12)
    assert (np.diff(_angle_deg(out[69:69 + fast, f], rot[69:69 + fast, f])) < 0).all()
    np.testing.assert_allclose(_walk(seen, rot, fps, batch=7)[0], out, atol=1e-12)


def test_short_dropout_holds_the_last_fresh_rotation():
    """Seen by the hysteresis but not usable on frames 5-6: the last fresh rotation at full weight,
    source held, confidence weight 0; then the observation again."""
    T, e = 10, J["right_elbow"]
    rot = np.tile(np.eye(3), (T, 52, 1, 1))
    rot[:, e] = [_rot("y", 10.0 * t) for t in range(T)]
    seen = np.ones((T, 52), bool)
    fresh = seen.copy()
    fresh[5:7, e] = False
    b = V.UnseenBlender()
    out, w, src = b(rot, seen, np.arange(T) / 30.0, fresh=fresh)
    np.testing.assert_allclose(out[5:7, e], np.broadcast_to(rot[4, e], (2, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(out[7:, e], rot[7:, e], atol=1e-12)
    assert (src[5:7, e] == V.SOURCE_HELD).all() and (w[5:7, e] == 0).all() and (w[7:, e] == 1).all()
    assert (src[:, J["left_elbow"]] == V.SOURCE_SEEN).all()


def test_observed_joint_below_a_replaced_one_keeps_its_global_orientation():
    """A talking head: pelvis, spine and neck unseen (neutral), the head seen; the head's global
    orientation is the observed one, the replaced joints are their targets."""
    rng = np.random.default_rng(3)
    rot = rotations.axis_angle_to_matrix(rng.normal(scale=0.5, size=(4, 52, 3)))
    weight = np.zeros((4, 52))
    weight[:, J["head"]] = 1.0
    weight[:, LEGS] = 1.0
    target = np.broadcast_to(V.NEUTRAL_POSE, rot.shape)
    out = V.replace_unseen(rot, target, weight)
    G_obs, G = V.global_rotations(rot), V.global_rotations(out)
    np.testing.assert_allclose(G[:, J["head"]], G_obs[:, J["head"]], atol=1e-12)
    for j in ("pelvis", "spine1", "spine2", "spine3", "neck", "left_elbow"):
        np.testing.assert_allclose(out[:, J[j]], target[:, J[j]], atol=1e-12)
    # the legs' parent (pelvis) is replaced too: they keep their observed global orientation
    np.testing.assert_allclose(G[:, LEGS], G_obs[:, LEGS], atol=1e-12)
    # everything observed: nothing changes
    np.testing.assert_array_equal(V.replace_unseen(rot, target, np.ones((4, 52))), rot)


# --------------------------------------------------------------------------- capture file v2
def _v2_capture(tmp_path, name="c.npz", T=6):
    from tests.test_capture_file import _frame, _static

    w = cf.CaptureWriter(tmp_path / name, _static(), chunk_frames=4)
    for i in range(T):
        f = _frame(i)
        f.update(keypoint_visibility=np.full(24, 0.5), joint_confidence=np.full(52, 0.25),
                 joint_source=np.full(52, i % 4), foot_contact=[i % 2 == 0, False])
        w.append(**f)
    return w.close()


def test_v2_round_trip_and_defaults_of_appended_frames(tmp_path):
    cap = cf.load_capture(_v2_capture(tmp_path))
    assert int(cap["version"]) == cf.CAPTURE_VERSION == 2
    assert cap["keypoint_visibility"].dtype == np.float32 and cap["keypoint_visibility"].shape == (6, 24)
    np.testing.assert_array_equal(cap["joint_source"][:, 0], np.arange(6) % 4)
    assert cap["joint_source"].dtype == np.uint8 and cap["foot_contact"].dtype == bool
    np.testing.assert_array_equal(cap["foot_contact"][:, 0], np.arange(6) % 2 == 0)
    from tests.test_capture_file import _frame, _static

    w = cf.CaptureWriter(tmp_path / "d.npz", _static())
    f = _frame(0)
    f["keypoints_2d"] = np.tile([10.0, 20.0, 0.0], (24, 1))
    f["keypoints_2d"][3, 2] = 0.4
    w.append(**f)
    d = cf.load_capture(w.close())
    assert d["keypoint_visibility"][0, 3] == 1.0 and d["keypoint_visibility"][0].sum() == 1.0
    assert (d["joint_confidence"] == 1).all() and (d["joint_source"] == 0).all() and not d["foot_contact"].any()


def test_version_1_files_load_with_defaults(tmp_path):
    """The shipped ground-truth capture (version 1) and a version-1 file written here."""
    gt = cf.load_capture(REPO / "samples" / "demo_clip_gt.npz")
    assert int(gt["version"]) == 1
    T = gt.num_frames
    np.testing.assert_array_equal(gt["keypoint_visibility"], (gt["keypoints_2d"][..., 2] > 0).astype(np.float32))
    assert gt["joint_confidence"].shape == (T, 52) and (gt["joint_confidence"] == 1).all()
    assert (gt["joint_source"] == 0).all() and gt["foot_contact"].shape == (T, 2) and not gt["foot_contact"].any()
    data = dict(np.load(_v2_capture(tmp_path)))
    for k in cf.V2_FRAME_KEYS:
        data.pop(k)
    np.savez(tmp_path / "v1.npz", **{**data, "version": np.int32(1)})
    old = cf.load_capture(tmp_path / "v1.npz")
    assert (old["joint_confidence"] == 1).all() and old["keypoint_visibility"].shape == (6, 24)
    np.savez(tmp_path / "v2_missing.npz", **data)             # version 2 without its keys
    with pytest.raises(ModelFileError, match=r"v2_missing\.npz.*'keypoint_visibility' is missing"):
        cf.load_capture(tmp_path / "v2_missing.npz")


@pytest.mark.parametrize("key, value, message", [
    ("keypoint_visibility", lambda d: d["keypoint_visibility"] * 3, r"in \[0, 1\], got 1\.5 \(frame 0\)"),
    ("keypoint_visibility", lambda d: d["keypoint_visibility"][:, :20], "has 20 keypoints"),
    ("joint_confidence", lambda d: np.where(np.arange(52) == 5, np.nan, d["joint_confidence"]).astype(np.float32),
     "non-finite value"),
    ("joint_confidence", lambda d: d["joint_confidence"][:, :51], r"expected \(T, 52\)"),
    ("joint_confidence", lambda d: -d["joint_confidence"], r"in \[0, 1\]"),
    ("joint_source", lambda d: np.full_like(d["joint_source"], 7), "codes 0..3.*got 7"),
    ("joint_source", lambda d: d["joint_source"].astype(np.float32), "codes 0..3"),
    ("foot_contact", lambda d: d["foot_contact"].astype(np.float32), "expected bool"),
    ("foot_contact", lambda d: d["foot_contact"][:3], "has 3 frames"),
])
def test_bad_v2_values_name_the_field(tmp_path, key, value, message):
    data = dict(np.load(_v2_capture(tmp_path)))
    data[key] = value(data)
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(ModelFileError, match=rf"bad\.npz.*'{key}'.*{message}"):
        cf.load_capture(tmp_path / "bad.npz")


def test_unfinished_version_1_capture_is_recovered_with_defaults(tmp_path):
    """An unfinished capture of a version-1 writer (chunks without the new keys) is recovered."""
    from tests.test_capture_file import _frame, _static

    out = tmp_path / "old.npz"
    d = cf.partial_dir(out)
    d.mkdir()
    np.savez(d / "static.npz", version=np.int32(1), **{k: np.asarray(v) for k, v in _static().items()})
    frames = [_frame(i) for i in range(3)]
    np.savez(d / "chunk_00000000_00003.npz", **{k: np.stack([np.asarray(f[k]) for f in frames]) for k in frames[0]})
    cap = cf.load_capture(out)
    assert cap.num_frames == 3 and int(cap["version"]) == 1 and (cap["joint_source"] == 0).all()


# --------------------------------------------------------------------------- the capture pipeline
@pytest.fixture(scope="module")
def replay_pipeline():
    from model_runtime.capture.pipeline import build_pipeline
    from model_runtime.core.options import CaptureOptions
    from tests.test_capture_orchestration import ReplayDetector

    return build_pipeline(CaptureOptions(device="cpu", face=False), detector=ReplayDetector())


def _capture_legs_out_of_frame(pipe, frames, path, feet: bool = True):
    """The replayed demo clip with the leg keypoints of ``frames`` moved half an image below it
    (their detector confidence unchanged, as MediaPipe's guesses for a waist-up crop)."""
    from model_runtime.capture.pipeline import CapturePipeline
    from model_runtime.core.options import CaptureOptions
    from tests.test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording

    class LegsBelowTheImage(ReplayDetector):
        def recorded(self, i):
            det = super().recorded(i)
            if int(self.rec["index"][i]) in frames:
                rows = [BODY_KEYPOINT_NAMES.index(f"{s}_{n}") for s in ("left", "right")
                        for n in ("knee", "ankle", "heel", "big_toe")]
                det.body_2d[rows, 1] = 1.5 * self.size[1]
            return det

    opts = CaptureOptions(device="cpu", face=False, feet=feet)
    recs: list = []
    CapturePipeline(LegsBelowTheImage(), pipe.ik, pipe.body, None, opts).run(
        GreyFrames(_load_recording()), path, on_frame=recs.append)
    return cf.load_capture(path), recs


def test_pipeline_legs_out_of_frame_are_unseen_and_standing(replay_pipeline, tmp_path):
    """Legs below the image on every frame: flagged unseen (confidence 0, source neutral), absent
    from the IK's input, standing straight (knees < 5 degrees); the rest of the body is seen."""
    cap, recs = _capture_legs_out_of_frame(replay_pipeline, set(range(81)), tmp_path / "legs.npz")
    assert cap.num_frames == 81 and cap["valid"].all() and int(cap["version"]) == 2
    assert (cap["joint_confidence"][:, LEGS] == 0).all() and (cap["joint_source"][:, LEGS] == V.SOURCE_NEUTRAL).all()
    assert (cap["keypoint_visibility"][:, LEG_KEYPOINTS] == 0).all()
    assert all((r.ik_conf[LEG_KEYPOINTS] == 0).all() for r in recs)
    knees = _angle_deg(rotations.rot6d_to_matrix(cap["pose_6d"][:, [J["left_knee"], J["right_knee"]]].astype(np.float64)),
                       np.eye(3))
    assert knees.max() < 5.0
    torso = [J[n] for n in ("pelvis", "spine1", "spine2", "spine3", "neck", "head")]
    assert (cap["joint_source"][:, torso] == V.SOURCE_SEEN).all() and (cap["joint_confidence"][:, torso] > 0.3).all()


def test_pipeline_legs_leaving_the_frame_are_held_then_neutral(replay_pipeline, tmp_path):
    """Legs seen on frames 0-29, below the image from frame 30: seen before, then held for HOLD_S,
    then neutral (knees straight by the end); the capture without the edit is unchanged before
    (but for the last frames whose centred smoothing sees frame 30).  Without the feet stage, whose
    foot lock looks up to a few seconds ahead by design (tests/test_feet.py)."""
    cap, _ = _capture_legs_out_of_frame(replay_pipeline, set(range(30, 81)), tmp_path / "leave.npz", feet=False)
    full, _ = _capture_legs_out_of_frame(replay_pipeline, set(), tmp_path / "full.npz", feet=False)
    knee = J["left_knee"]
    src = cap["joint_source"][:, knee]
    assert (src[:30] == V.SOURCE_SEEN).all() and (full["joint_source"][:, knee] == V.SOURCE_SEEN).all()
    off = 30 + V.OFF_FRAMES - 1                                   # the hysteresis lets 2 frames pass
    assert (src[off:] != V.SOURCE_SEEN).all() and (src[off:off + 25] == V.SOURCE_HELD).all()
    assert (src[-5:] == V.SOURCE_NEUTRAL).all() and (cap["joint_confidence"][off:, knee] == 0).all()
    before = 30 - MAX_HALF_WINDOW          # the image-aligned fit's smoothing sees a few frames ahead
    np.testing.assert_array_equal(cap["pose_6d"][:before], full["pose_6d"][:before])
    knees = _angle_deg(rotations.rot6d_to_matrix(cap["pose_6d"][-3:, [knee, J["right_knee"]]].astype(np.float64)),
                       np.eye(3))
    assert knees.max() < 3.0
