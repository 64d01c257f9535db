"""Another person, or a cut: the capture starts a new track instead of gliding between two people.

MediaPipe Holistic follows one person; when it loses them for a frame (players crossing in the ROMP
football clip) it may come back on another one, metres away.  ``PersonSwitchDetector`` marks the frame
(``track_break``), the gap before it holds the last frame instead of interpolating towards the other
person, no filter or smoother links the two, the capture file says where, ``eval video`` leaves the
pairs across it out, and Blender gets a timeline marker there.

* the detector on synthetic torso tracks (a runner crossing the view, a jump after a dropped frame,
  a torso that doubles, a waist-up clip, frames without a torso);
* the gap filler: a gap before a break is held, otherwise interpolated;
* the real capture pipeline on the recorded detections of the demo clip (``tests/data``), with the
  person "replaced" from frame 40 on by the same detections 250 px to the left and frame 39 dropped,
  against the same replay without the move;
* the capture file: the field round-trips, a version-2 file without it loads with none, a wrong
  dtype is named;
* Blender (bpy as a module): markers on the break frames, replaced on re-import;
* where ``../shared`` is present, the ROMP football clip's first 100 frames: breaks where the
  detector jumps to another player (frames 58 and 81), none on the tennis clip's first 100.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_runtime.capture.filters import GapFiller
from model_runtime.capture.tracking import PersonSwitchDetector, torso_anchor
from model_runtime.core import capture_file as cf
from model_runtime.core.errors import ModelFileError
from model_runtime.core.skeleton import BODY_KEYPOINT_NAMES

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "data" / "realdata"
SWITCH_AT, SHIFT_PX = 40, -250.0

_SH = [BODY_KEYPOINT_NAMES.index(n) for n in ("left_shoulder", "right_shoulder")]
_HIP = [BODY_KEYPOINT_NAMES.index(n) for n in ("left_hip", "right_hip")]


def _torso(cx: float, cy: float, length: float, hips: bool = True) -> np.ndarray:
    """``(24, 3)`` body keypoints, shoulders 0.8 ``length`` wide centred on ``(cx, cy)``, (optionally) hips ``length`` below."""
    kp = np.zeros((24, 3))
    kp[_SH] = [[cx + 0.4 * length, cy, 1.0], [cx - 0.4 * length, cy, 1.0]]
    if hips:
        kp[_HIP] = [[cx + 0.2 * length, cy + length, 1.0], [cx - 0.2 * length, cy + length, 1.0]]
    return kp


def test_switch_detector_on_synthetic_tracks():
    fps = 30.0
    d = PersonSwitchDetector()
    # a runner crossing a static camera's view at 20 torso lengths a second: one track
    assert not any(d.update(i / fps, _torso(100 + 20 * 100 * i / fps, 300, 100)) for i in range(30))
    # the detector loses him for a frame and comes back on a player 4 torso lengths away
    assert d.update(31 / fps, _torso(100 + 20 * 100 * 29 / fps + 400, 300, 100))
    # a torso 2.2 times larger within a frame (a cut to a close shot), in place
    d2 = PersonSwitchDetector()
    d2.update(0.0, _torso(300, 300, 80))
    assert d2.update(1 / fps, _torso(300, 300, 176)) and d2.breaks == 1
    # a waist-up person turning sideways: the shoulders narrow to a quarter in 5 frames, 20 px of sway a frame
    d5 = PersonSwitchDetector()
    for i in range(6):
        kp = _torso(300 + 20 * (i % 2), 100, 100, hips=False)
        kp[_SH[0], 0] = 300 + 20 * (i % 2) + 40 * (1 - 0.15 * i)
        kp[_SH[1], 0] = 300 + 20 * (i % 2) - 40 * (1 - 0.15 * i)
        assert not d5.update(i / fps, kp), i
    # the same size change over two seconds is a person walking towards the camera
    d3 = PersonSwitchDetector()
    assert not any(d3.update(i / fps, _torso(300, 300, 80 * (1 + i / 60))) for i in range(61))
    # waist-up: the shoulders alone place the torso; nothing to compare: no decision, no change of track
    assert torso_anchor(_torso(200, 100, 100, hips=False))[1] == pytest.approx(80.0)
    assert torso_anchor(np.zeros((24, 3))) is None
    d4 = PersonSwitchDetector()
    assert not d4.update(0.0, _torso(200, 100, 100, hips=False))
    assert not d4.update(1 / fps, np.zeros((24, 3)))
    assert d4.update(2 / fps, _torso(600, 100, 100, hips=False))


def test_gap_before_a_break_is_held():
    def recs(brk: bool):
        return [dict(valid=True, time=0.0, transl=np.zeros(3), track_break=False),
                dict(valid=False, time=1.0, transl=np.full(3, 7.0), track_break=False),
                dict(valid=True, time=2.0, transl=np.full(3, 10.0), track_break=brk)]
    for brk, want in ((False, 5.0), (True, 0.0)):
        g = GapFiller("interpolate", linear_keys=("transl",))
        out = [o for r in recs(brk) for o in g.push(r)]
        assert out[1]["transl"] == pytest.approx(np.full(3, want))
        g = GapFiller("interpolate", linear_keys=("transl",))     # filled again later (the feet stage)
        a, gap, b = recs(brk)
        g.fill_gap([gap], a, b)
        assert gap["transl"] == pytest.approx(np.full(3, want))


# --------------------------------------------------------------------------- the real pipeline
def _replay_capture(path: Path, switch: bool, drop: bool = True, face=None):
    """The replayed demo clip with frame SWITCH_AT - 1 dropped (``drop``) and, with ``switch``, every
    keypoint of the frames from SWITCH_AT on moved SHIFT_PX along x (another person standing there)."""
    from model_runtime.capture.pipeline import CapturePipeline, build_pipeline
    from model_runtime.core.options import CaptureOptions
    from tests.test_capture_orchestration import GreyFrames, ReplayDetector, _load_recording

    class AnotherPerson(ReplayDetector):
        def recorded(self, i):
            det = super().recorded(i)
            if switch and int(self.rec["index"][i]) >= SWITCH_AT:
                for a in (det.body_2d, det.hands_2d, det.wholebody_2d, det.face_landmarks, det.face_box):
                    if a is not None:
                        a[..., 0] += SHIFT_PX
            return det

    opts = CaptureOptions(device="cpu", face=face is not None)
    base = build_pipeline(CaptureOptions(device="cpu", face=False), detector=ReplayDetector())
    CapturePipeline(AnotherPerson(drop_person={SWITCH_AT - 1} if drop else ()), base.ik, base.body, face, opts).run(
        GreyFrames(_load_recording()), path)
    return cf.load_capture(path)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    d = tmp_path_factory.mktemp("track_breaks")
    return _replay_capture(d / "switch.npz", True), _replay_capture(d / "same.npz", False), d


def test_pipeline_starts_a_new_track_where_the_person_changes(replayed):
    switch, same, _ = replayed
    assert np.flatnonzero(switch["track_break"]).tolist() == [SWITCH_AT]
    assert not same["track_break"].any()
    gap = SWITCH_AT - 1
    assert not switch["valid"][gap] and not same["valid"][gap]
    t = switch["transl"]
    np.testing.assert_allclose(t[gap], t[gap - 1], atol=1e-6)                 # held, not half-way to the other
    assert abs(t[SWITCH_AT, 0] - t[gap - 1, 0]) > 0.3                          # the other person is elsewhere
    s = same["transl"]
    mid = 0.5 * (s[gap - 1] + s[gap + 1])
    np.testing.assert_allclose(s[gap], mid, atol=0.02)                        # one person: interpolated


def test_planted_feet_are_not_held_across_a_break(replayed):
    """The demo clip's thrower stands planted; the "other person" from frame 40 on, with no frame dropped
    between: the feet stage does not hold a foot where the first person stood (the contact span ends at
    the jump) nor join the two people's depths, so each ankle moves with its body."""
    from model_runtime.evals.video import ANKLES, PosedCapture

    _, same, d = replayed
    cut = _replay_capture(d / "cut.npz", True, drop=False)
    assert np.flatnonzero(cut["track_break"]).tolist() == [SWITCH_AT] and cut["valid"].all()
    assert not cut["foot_contact"][SWITCH_AT].any() and cut["foot_contact"][:SWITCH_AT].any()
    a, b = PosedCapture(cut), PosedCapture(same)
    for t in range(SWITCH_AT, SWITCH_AT + 8):
        shift = cut["transl"][t] - same["transl"][t]                        # the body moved as a whole ...
        moved = a.joints[t, ANKLES] - b.joints[t, ANKLES]                   # ... and so did its feet
        # held where the first person stood, an ankle would be ~1.5 m off; the two captures differ by a few
        # cm where one locks a planted foot and the other has just started its track (and in depth)
        assert np.abs(moved - shift).max() < 0.25, t


def test_eval_video_leaves_the_break_out(replayed):
    from model_runtime.evals.video import PosedCapture, _breaks, evaluate, jitter

    switch, _, _ = replayed
    figures, _ = evaluate(switch, PosedCapture(switch))
    assert figures["track_breaks"] == 1
    posed = PosedCapture(switch)
    valid = switch["valid"].astype(bool)
    assert figures["jitter_mm_per_frame2"] == pytest.approx(jitter(posed.joints, valid, _breaks(switch)))


def test_capture_file_track_break_field(replayed, tmp_path):
    switch, _, d = replayed
    data = {k: np.asarray(v) for k, v in switch.data.items()}
    old = {k: v for k, v in data.items() if k != "track_break"}               # a version-2 file made before it
    np.savez(tmp_path / "old.npz", **old)
    loaded = cf.load_capture(tmp_path / "old.npz")
    assert loaded["track_break"].dtype == bool and not loaded["track_break"].any()
    bad = dict(data, track_break=data["track_break"].astype(np.float32))
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ModelFileError, match=r"bad\.npz.*track_break"):
        cf.load_capture(tmp_path / "bad.npz")


def test_blender_marks_the_breaks(replayed, addon):
    bpy = pytest.importorskip("bpy")
    from fullbody_addon import avatar, importer
    from fullbody_addon.avatar_data import avatar_data_from_capture

    switch, _, _ = replayed
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    arm, mesh = avatar.create_avatar(avatar_data_from_capture(switch), name="Capture")
    for _ in range(2):                                                        # re-import: replaced, not added
        summary = importer.apply_capture(scene, arm, mesh, switch, importer.ImportOptions(frame_start=1))
    assert summary["track_breaks"] == [1 + SWITCH_AT]
    marks = [(m.name, m.frame) for m in scene.timeline_markers]
    assert marks == [(f"{importer.TRACK_MARKER} 1", 1 + SWITCH_AT)]


# --------------------------------------------------------------------------- real footage
@pytest.mark.skipif(not (REALDATA / "ROMP").is_dir(), reason="needs ../shared/data/realdata")
def test_real_football_clip_switches_players(tmp_path):
    from model_runtime.cli.main import main

    out = tmp_path / "romp.npz"
    assert main(["capture", str(REALDATA / "ROMP/demo/videos/sample_video.mp4"), "-o", str(out), "--end", "100",
                 "--quiet", "--no-face"]) == 0
    cap = cf.load_capture(out)
    breaks = np.flatnonzero(cap["track_break"]).tolist()
    assert breaks == [58, 81]
    for b in breaks:                                    # the dropped frame before each holds the old player
        np.testing.assert_allclose(cap["transl"][b - 1], cap["transl"][b - 2], atol=1e-6)
    tennis = tmp_path / "tennis.npz"
    assert main(["capture", str(REALDATA / "GVHMR/docs/example_video/tennis.mp4"), "-o", str(tennis), "--end", "100",
                 "--quiet", "--no-face"]) == 0
    assert not cf.load_capture(tennis)["track_break"].any()


def test_a_new_track_starts_the_face_tracker_cold():
    """The face stage (the real landmark tracker, recorded MediaPipe landmarks of the demo clip) warm-starts
    each face from the last frame's, except after :meth:`new_track`: another person's face is not fitted
    from this one's pose and expression."""
    from model_runtime.face.fit import FaceFitter
    from model_runtime.face.stage import FaceFitStage
    from model_runtime.models.load import load_face_model
    from tests.test_capture_orchestration import ReplayDetector

    det = ReplayDetector()
    frames = [i for i in range(len(det.rec["index"])) if np.isfinite(det.rec["face_box"][i]).all()][:3]
    stage = FaceFitStage(FaceFitter(load_face_model()))
    stage.reset(np.array([[900.0, 0, 480], [0, 900.0, 270], [0, 0, 1]]))
    starts = []
    track = stage.tracker.track

    def spy(lm, K, identity, previous=None, **kw):
        starts.append(previous is None)
        return track(lm, K, identity, previous, **kw)

    stage.tracker.track = spy
    stage.track(None, det.recorded(frames[0]))
    stage.track(None, det.recorded(frames[1]))
    stage.new_track()
    out = stage.track(None, det.recorded(frames[2]))
    assert starts == [True, False, True] and out is not None and np.isfinite(out[0]).all()


def test_the_pipeline_tells_the_face_stage_where_a_track_starts(tmp_path):
    """The replayed switch with the real face stage: ``new_track`` is called on the break frame, once."""
    from model_runtime.face.fit import FaceFitter
    from model_runtime.face.stage import FaceFitStage
    from model_runtime.models.load import load_face_model

    stage = FaceFitStage(FaceFitter(load_face_model()))
    calls, track, new_track = [], stage.track, stage.new_track
    stage.track = lambda image, det: (calls.append(("track", det.face_box is not None)), track(image, det))[1]
    stage.new_track = lambda: (calls.append(("new_track", None)), new_track())[1]
    cap = _replay_capture(tmp_path / "face.npz", True, face=stage)
    assert np.flatnonzero(cap["track_break"]).tolist() == [SWITCH_AT]
    assert [c for c in calls if c[0] == "new_track"] == [("new_track", None)]
    i = calls.index(("new_track", None))
    assert calls[i + 1][0] == "track"                   # right before the break frame's face is tracked
    assert sum(c[0] == "track" for c in calls[:i]) == int(cap["valid"][:SWITCH_AT].sum())
