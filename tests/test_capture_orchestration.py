"""Orchestration of the capture (threads, keyframes, gaps, hand sides, cancel) with the real IK nets,
body model and face stage, fed by detections recorded from the real MediaPipe detector on
``samples/demo_clip.mp4`` (``tests/data/README.md``) instead of decoding and detecting video.

Frames are uniform grey images of the clip's size at its frame times; the grey level rises with
the frame index, so each keyframe's fitted lighting differs and a frame's lighting says which
keyframe it came from.
"""
from __future__ import annotations

import threading
from concurrent.futures import wait as wait_futures
from pathlib import Path

import numpy as np
import pytest

from model_runtime.capture.align_clip import MAX_HALF_WINDOW
from model_runtime.capture.filters import slerp
from model_runtime.capture.fitting import frame_record
from model_runtime.capture.keyframes import KEYFRAME_GAP_S, KeyframeScheduler
from model_runtime.capture.pipeline import CapturePipeline, build_pipeline
from model_runtime.capture.records import StageTimer
from model_runtime.capture.sources import Frame, FrameSource
from model_runtime.capture.tracking import HandSideTracker
from model_runtime.capture.workers import KeyframeFaceWorker
from model_runtime.core.capture_file import load_capture
from model_runtime.core.errors import CancelledError
from model_runtime.core.options import CaptureOptions
from model_runtime.detectors.base import Detection, Detector
from model_runtime.face.fit import ambient_sh
from model_runtime.geometry.camera import intrinsics_from_fov

RECORDING = Path(__file__).parent / "data" / "demo_clip_detections.npz"
#: seconds a gated face fit waits for the test before failing it (never reached when it passes)
GATE_TIMEOUT_S = 120.0
AMBIENT = ambient_sh().astype(np.float64)


# --------------------------------------------------------------------------- replayed clip
def _load_recording() -> dict[str, np.ndarray]:
    with np.load(RECORDING) as z:
        return {k: z[k] for k in z.files}


class ReplayDetector:
    """A :class:`Detector` that returns the recorded detection of the frame with the given
    timestamp, optionally edited: ``drop_person`` frames have no person, ``swap_hands`` frames
    have the two hand slots exchanged; ``after_detect(index)`` is called after each frame."""

    name = "replay"

    def __init__(self, drop_person=(), swap_hands=(), after_detect=None):
        self.rec = _load_recording()
        self.row = {int(ts): i for i, ts in enumerate(self.rec["timestamp_ms"])}
        self.size = tuple(int(v) for v in self.rec["image_size"])
        self.drop_person, self.swap_hands, self.after_detect = set(drop_person), set(swap_hands), after_detect

    def recorded(self, i: int) -> Detection:
        r = self.rec
        box = r["face_box"][i]
        face = bool(np.isfinite(box).all())
        lm = r["face_landmarks"][i].astype(np.float32) + np.r_[box[:2], 0.0].astype(np.float32) if face else None
        return Detection(image_size=self.size, person=bool(r["person"][i]), body_2d=r["body_2d"][i].copy(),
                         body_3d=r["body_3d"][i].copy(), hands_2d=r["hands_2d"][i].copy(),
                         hands_3d=r["hands_3d"][i].copy(), hands_conf=r["hands_conf"][i].copy(),
                         face_box=box.copy() if face else None, face_landmarks=lm,
                         wholebody_2d=r["wholebody_2d"][i].astype(np.float32), face_conf=float(r["face_conf"][i]))

    def detect(self, image_bgr: np.ndarray, timestamp_ms: int | None = None) -> Detection:
        if image_bgr.shape[:2] != self.size[::-1]:
            raise ValueError(f"image {image_bgr.shape[1::-1]} is not the recorded size {self.size}")
        i = self.row[timestamp_ms]
        index = int(self.rec["index"][i])
        det = Detection.empty(self.size) if index in self.drop_person else self.recorded(i)
        if index in self.swap_hands:
            det.hands_2d, det.hands_3d, det.hands_conf = det.hands_2d[::-1], det.hands_3d[::-1], det.hands_conf[::-1]
        if self.after_detect is not None:
            self.after_detect(index)
        return det.validate()

    def detect_hand(self, image_bgr, side_hint=None):
        raise NotImplementedError("the recording has no hand-only crops")

    def reset(self) -> None:
        pass                     # replay has no tracking state

    def close(self) -> None:
        pass


#: BGR share of a level in the replayed frames: a skin tone (sRGB R : G : B = 1 : 0.75 : 0.65), so that the
#: appearance fit, which learns only from skin colours (model_runtime/face/skin.py), fits every level
SKIN_TINT = np.array([0.65, 0.75, 1.0])


def skin_image(h: int, w: int, level: int) -> np.ndarray:
    """A uniform ``(h, w, 3)`` uint8 BGR image of a skin tone whose red channel is ``level``."""
    return np.broadcast_to(np.round(level * SKIN_TINT).astype(np.uint8), (h, w, 3)).copy()


class GreyFrames(FrameSource):
    """The recorded clip's frames as uniform images of a skin tone, its level rising with the index (each
    keyframe's lighting then differs)."""

    def __init__(self, rec: dict[str, np.ndarray]):
        self.index, self.times = rec["index"], rec["time"]
        self.image_size = tuple(int(v) for v in rec["image_size"])
        self.fps, self.num_frames, self.description = float(rec["fps"]), len(self.index), "replayed demo clip"

    def __iter__(self):
        w, h = self.image_size
        for i, t in zip(self.index, self.times):
            yield Frame(int(i), float(t), skin_image(h, w, 40 + 2 * int(i)))


class GatedFace:
    """The real face stage whose keyframe fits start only once the test opens ``gate``."""

    def __init__(self, stage):
        self._stage, self.gate = stage, threading.Event()

    def __getattr__(self, name):
        return getattr(self._stage, name)

    def fit_appearance(self, image_bgr, detection, seed):
        if not self.gate.wait(GATE_TIMEOUT_S):
            raise RuntimeError("the test never opened the gate")
        return self._stage.fit_appearance(image_bgr, detection, seed)


@pytest.fixture(scope="module")
def real():
    """The real IK nets, body model and face stage (loaded once)."""
    pipe = build_pipeline(CaptureOptions(device="cpu"), detector=ReplayDetector())
    return pipe


def capture(real, detector=None, face=None, output=None, live=None, cancel=None, on_frame=None, on_progress=None,
            **options):
    """Run a capture of the replayed clip; -> (result, the written records as dicts, in order)."""
    opts = CaptureOptions(device="cpu", shape_window=8, face=face is not False, **options)
    stage = real.face if face is None else (None if face is False else face)
    pipe = CapturePipeline(detector or ReplayDetector(), real.ik, real.body, stage, opts)
    recs: list[dict] = []

    def keep(rec) -> None:       # a FrameRecord; kept as its live field dict for brevity below
        recs.append(vars(rec))
        if on_frame is not None:
            on_frame(recs[-1], recs)

    res = pipe.run(GreyFrames(_load_recording()), output, cancel=cancel, on_frame=keep, on_progress=on_progress,
                   live=live)
    return res, recs


def _face_frames(recs):
    face = [r for r in recs if r["face_ok"]]
    keys = [r for r in face if r["keyframe_fit"] is not None]
    return face, keys


# --------------------------------------------------------------------------- keyframes
def test_replay_detector_is_a_detector():
    det = ReplayDetector()
    assert isinstance(det, Detector)
    d = det.detect(np.zeros((480, 640, 3), np.uint8), timestamp_ms=int(det.rec["timestamp_ms"][40]))
    assert d.person and d.face_landmarks.shape == (468, 3) and d.hands_conf.shape == (2,)
    assert len(det.rec["index"]) == 81


def test_every_n_keyframes_are_waited_for(real):
    """face_every=4: every 4th face frame is a keyframe, and every face frame carries the lighting
    of the latest keyframe at or before it (each fit is waited for)."""
    res, recs = capture(real, face_every=4)
    face, keys = _face_frames(recs)
    assert len(recs) == 81 and len(face) > 60
    assert [r["index"] for r in keys] == [r["index"] for r in face[::4]]
    assert res.face_fits == len(keys)
    lights = {r["index"]: r["keyframe_fit"].result() for r in keys}
    assert len({float(sh[0]) for sh in lights.values() if sh is not None}) > 5     # each level its own
    current = AMBIENT
    for r in face:
        if lights.get(r["index"]) is not None:
            current = lights[r["index"]]
        np.testing.assert_array_equal(r["sh"], current)


def test_adaptive_first_keyframe_holds_the_frames(real):
    """Adaptive, offline: the first face frame is the clip's keyframe (the clip is shorter than
    KEYFRAME_GAP_S) and no frame is written before its fit is done; every face frame has its
    lighting.  The fit is held until the detector has replayed the whole clip."""
    stage = GatedFace(real.face)
    written_at_open = []
    recs_box: list[list] = [[]]

    def after_detect(index: int) -> None:
        if index == 80:
            written_at_open.append(len(recs_box[0]))
            stage.gate.set()

    def on_frame(rec, recs):
        recs_box[0] = recs

    res, recs = capture(real, detector=ReplayDetector(after_detect=after_detect), face=stage, on_frame=on_frame)
    face, keys = _face_frames(recs)
    assert written_at_open == [0]
    assert [r["index"] for r in keys] == [face[0]["index"]] and res.face_fits == 1
    first = keys[0]["keyframe_fit"].result()
    assert first is not None and not np.allclose(first, AMBIENT)
    for r in face:
        np.testing.assert_array_equal(r["sh"], first)


def test_live_never_waits_for_a_keyframe(real):
    """Live: frames are written while the first keyframe's fit is still held (ambient lighting);
    the frame after the fit finished gets its lighting.  The shape is the running estimate."""
    stage = GatedFace(real.face)
    opened_after: list[int] = []

    def on_frame(rec, recs):
        if len(recs) == 10:
            opened_after.append(rec["index"])
            stage.gate.set()
            fit = next(r["keyframe_fit"] for r in recs if r["keyframe_fit"] is not None)
            assert wait_futures([fit], GATE_TIMEOUT_S).done

    res, recs = capture(real, face=stage, live=True, on_frame=on_frame)
    face, keys = _face_frames(recs)
    assert len(recs) == 81 and [r["index"] for r in keys] == [face[0]["index"]]
    lit = keys[0]["keyframe_fit"].result()
    assert lit is not None and not np.allclose(lit, AMBIENT)
    for r in face:
        np.testing.assert_array_equal(r["sh"], AMBIENT if r["index"] <= opened_after[0] else lit)
    betas = np.stack([r["betas"] for r in recs])
    assert np.abs(betas - betas[-1]).max() > 0                 # running shape estimate, not held back
    _, offline = capture(real, face=False)
    assert np.ptp(np.stack([r["betas"] for r in offline]), axis=0).max() == 0


def test_adaptive_later_keyframes_never_hold_frames(real):
    """The scheduler with the real worker and face stage: the first keyframe holds its frame until
    its fit is done; a later one (KEYFRAME_GAP_S on) does not, and its lighting goes to the first
    frame released after it finished.  A busy worker takes no keyframe."""
    detector, stage, stop = ReplayDetector(), GatedFace(real.face), threading.Event()
    stage.reset(intrinsics_from_fov(detector.size, 60.0))
    worker = KeyframeFaceWorker(stage, stop, StageTimer())
    sched = KeyframeScheduler(worker, every=0, live=False, current_sh=stage.current_sh)
    hands = HandSideTracker()

    def face_frame(i: int, t: float):
        frame = Frame(i, t, skin_image(480, 640, 60 + 30 * i))
        det = detector.recorded(i)
        rec = frame_record(frame, det, 0.0, hands, len(stage.expression_names))
        rec.face_ok = True
        rec.keyframe_fit = sched.submit_if_keyframe(frame, det, stage.track(frame.image, det)[1])
        return rec

    try:
        r0, r1 = face_frame(0, 0.0), face_frame(1, 0.1)
        assert r0.keyframe_fit is not None and r1.keyframe_fit is None          # within KEYFRAME_GAP_S
        assert not sched.may_release(r0, final=False)                            # first keyframe: held
        stage.gate.set()
        first = r0.keyframe_fit.result(GATE_TIMEOUT_S)
        assert sched.may_release(r0, final=False) and sched.may_release(r1, final=False)
        np.testing.assert_array_equal(sched.lighting(), first)
        stage.gate.clear()
        r2, r3 = face_frame(2, KEYFRAME_GAP_S + 0.2), face_frame(3, KEYFRAME_GAP_S + 0.3)
        assert r2.keyframe_fit is not None and r3.keyframe_fit is None           # worker busy with r2's
        assert sched.may_release(r2, final=False) and not r2.keyframe_fit.done()  # not held
        np.testing.assert_array_equal(sched.lighting(), first)
        stage.gate.set()
        second = r2.keyframe_fit.result(GATE_TIMEOUT_S)
        assert sched.may_release(r3, final=False)
        np.testing.assert_array_equal(sched.lighting(), second)
        assert not np.allclose(first, second)
    finally:
        stage.gate.set()
        worker.close()


# --------------------------------------------------------------------------- gaps, hands
@pytest.mark.parametrize("fill", ["interpolate", "hold"])
def test_dropped_person_is_gap_filled(real, fill):
    """Frames 40-44 without a person: invalid, pose and translation held from frame 39 or
    interpolated (slerp/lerp by time) to frame 45; the face gap is interpolated either way."""
    gap = range(40, 45)
    _, recs = capture(real, detector=ReplayDetector(drop_person=gap), fill=fill)
    by = {r["index"]: r for r in recs}
    a, b = by[39], by[45]
    assert a["valid"] and b["valid"] and a["face_ok"] and b["face_ok"]
    for i in gap:
        r = by[i]
        assert not r["valid"] and not r["face_ok"]
        w = (r["time"] - a["time"]) / (b["time"] - a["time"])
        if fill == "hold":
            np.testing.assert_array_equal(r["transl"], a["transl"])
            np.testing.assert_array_equal(r["quat"], a["quat"])
        else:
            np.testing.assert_allclose(r["transl"], (1 - w) * a["transl"] + w * b["transl"], rtol=0, atol=1e-12)
            np.testing.assert_allclose(r["quat"], slerp(a["quat"], b["quat"], w), rtol=0, atol=1e-12)
        for key in ("expression", "sh"):
            np.testing.assert_allclose(r[key], (1 - w) * a[key] + w * b[key], rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def body_only(real, tmp_path_factory):
    """The replayed clip captured without the face (and the feet stage, as the cancelled one it is
    compared with), to a file: (result, records, capture)."""
    path = tmp_path_factory.mktemp("body") / "full.npz"
    res, recs = capture(real, face=False, output=path, feet=False)
    return res, recs, load_capture(path)


def test_swapped_hands_are_put_back(real, body_only):
    """Hands swapped by the detector on frames 10-14 are put back on the person's sides: the same
    hands, IK input and capture as without the swap, five more swaps counted."""
    base, base_recs, _ = body_only
    res, recs = capture(real, detector=ReplayDetector(swap_hands=range(10, 15)), face=False, feet=False)
    assert res.hand_swaps == base.hand_swaps + 5
    for r, b in zip(recs, base_recs, strict=True):
        for key in ("hands_2d", "hands_3d", "hands_conf", "quat", "transl"):
            np.testing.assert_array_equal(r[key], b[key])


def test_cancel_keeps_the_finished_frames(real, body_only, tmp_path):
    """Cancelled after 20 written frames: CancelledError naming the kept partial capture, whose
    frames are the uncancelled capture's first ones (but its last few: the image-aligned fit's
    centred smoothing finishes them without their successors, within a few millimetres).  Without
    the feet stage, which holds ~3.5 s of frames offline (its cancel: tests/test_feet.py)."""
    _, _, full = body_only
    cancel = threading.Event()

    def stop_at_20(done, total, fps):
        if done >= 20:
            cancel.set()

    with pytest.raises(CancelledError, match="kept in") as e:
        capture(real, face=False, output=tmp_path / "c.npz", cancel=cancel, on_progress=stop_at_20, feet=False)
    part = load_capture(e.value.partial_output)
    n = part.num_frames
    assert 20 <= n < 81 and part["valid"].all()
    same = n - MAX_HALF_WINDOW
    for key in ("pose_6d", "transl", "keypoints_2d"):
        np.testing.assert_allclose(part[key][:same], full[key][:same], rtol=0, atol=1e-5)
    np.testing.assert_allclose(part["keypoints_2d"], full["keypoints_2d"][:n], rtol=0, atol=1e-5)
    np.testing.assert_allclose(part["transl"], full["transl"][:n], rtol=0, atol=0.02)


def test_cancel_with_pending_keyframe_fits(real, tmp_path):
    """face_every=1 (each frame's fit waited for), cancelled after 10 frames: the partial capture
    is kept, finite, and the face worker thread is gone."""
    cancel = threading.Event()

    def stop_at_10(done, total, fps):
        if done >= 10:
            cancel.set()

    with pytest.raises(CancelledError) as e:
        capture(real, face_every=1, output=tmp_path / "f.npz", cancel=cancel, on_progress=stop_at_10, feet=False)
    part = load_capture(e.value.partial_output)
    assert 10 <= part.num_frames < 81
    assert np.isfinite(part["face_sh"]).all() and np.abs(part["face_sh"]).sum(-1).min() > 0
    assert not [t for t in threading.enumerate() if t.name.startswith("capture-face")]


def test_stage_cpu_times_are_recorded(real):
    """Each stage's thread CPU time is recorded next to its wall time (``bench`` reports both):
    one thread cannot use more CPU than wall time in a stage."""
    res, recs = capture(real)
    assert len(recs) == 81
    assert {"decode", "detect", "ik", "face_track", "filter"} <= set(res.stage_cpu_ms)
    for k, cpu in res.stage_cpu_ms.items():
        assert 0.0 <= cpu <= 1.05 * res.stage_ms[k] + 0.5, (k, cpu, res.stage_ms[k])
    assert res.stage_cpu_ms["ik"] > 0 and res.stage_cpu_ms["filter"] > 0
    assert 0.0 < res.fitting_cpu_s <= res.wall_s * 1.05 + 0.1


def test_fitting_runs_below_the_detector(real):
    """The fitting (and the callbacks it calls) runs in one thread other than the caller's, FIT_THREAD_NICE
    nice steps lower (Linux), so the detector's threads come first; the caller's own priority is untouched."""
    import os
    import threading

    from model_runtime.capture.workers import FIT_THREAD_NICE

    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = set()

    def on_frame(rec, recs):
        seen.add((threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    res, recs = capture(real, face=False, on_frame=on_frame)
    assert len(recs) == 81 and len(seen) == 1
    (tid, nice), = seen
    assert tid != threading.get_native_id()
    assert nice == min(19, caller + FIT_THREAD_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller


def test_thread_priorities_are_relative_to_the_process():
    """A thread started by the niced fitting thread (the keyframe face worker) ends FACE_THREAD_NICE
    below the process, not that much below the fitting thread; a thread already lower stays there."""
    import os

    from model_runtime.capture.workers import FACE_THREAD_NICE, FIT_THREAD_NICE, lower_thread_priority

    base = os.getpriority(os.PRIO_PROCESS, os.getpid())
    seen = {}

    def child():
        lower_thread_priority(FACE_THREAD_NICE)
        seen["face"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        lower_thread_priority(FIT_THREAD_NICE)           # never raised back
        seen["again"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def fitting():
        lower_thread_priority(FIT_THREAD_NICE)
        seen["fit"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        t = threading.Thread(target=child)
        t.start()
        t.join()

    t = threading.Thread(target=fitting)
    t.start()
    t.join()
    assert seen == {"fit": min(19, base + FIT_THREAD_NICE), "face": min(19, base + FACE_THREAD_NICE),
                    "again": min(19, base + FACE_THREAD_NICE)}
    assert FIT_THREAD_NICE < FACE_THREAD_NICE


def test_detected_queue_is_sized_by_image_memory():
    """Offline the detector may run ahead of the fitting by up to 256 MiB of images (64 frames at
    most, never fewer than queue_size); live the queue stays short (latency)."""
    from model_runtime.capture.workers import DETECTED_QUEUE_BYTES, MAX_DETECTED_FRAMES, detected_queue_size

    assert detected_queue_size((812, 720), 8, live=False) == MAX_DETECTED_FRAMES
    n = detected_queue_size((1080, 1920), 8, live=False)
    assert 8 < n < MAX_DETECTED_FRAMES and n * 1080 * 1920 * 3 <= DETECTED_QUEUE_BYTES
    assert detected_queue_size((3840, 2160), 8, live=False) == 10
    assert detected_queue_size((7680, 4320), 8, live=False) == 8
    assert detected_queue_size((812, 720), 8, live=True) == 8
