"""The panel against the real runtime: ``model_runtime serve`` from the project's interpreter,
started by the add-on's own client, capturing ``samples/demo_clip.mp4`` (81 frames, shipped).

Capture -> imported keys; Stop half-way -> the partial capture imported; the runtime killed
with SIGKILL half-way -> the recovered frames (and the per-clip shape) imported; Live on a video
source -> frames applied to the avatar, Record -> keys.  bpy as a module has no event loop, so
:func:`run_pumped` calls the add-on's registered timer as Blender would.  Nothing here is timed:
progress is checked with counters and events.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import fullbody_addon  # noqa: E402
from fullbody_addon import avatar, operators, preferences, runtime_setup, session  # noqa: E402
from fullbody_addon.runtime_client import CaptureJob, HealthCheck, RuntimeClient, serve_argv  # noqa: E402
from model_runtime.core.capture_file import load_capture  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "samples" / "demo_clip.mp4"
CLIP_FRAMES = 81


@pytest.fixture(scope="module")
def addon():
    old = os.environ.get(preferences.RUNTIME_PYTHON_ENV)
    os.environ[preferences.RUNTIME_PYTHON_ENV] = sys.executable   # the project's .venv: the real runtime
    fullbody_addon.register()
    yield
    fullbody_addon.unregister()
    if old is None:
        os.environ.pop(preferences.RUNTIME_PYTHON_ENV, None)
    else:
        os.environ[preferences.RUNTIME_PYTHON_ENV] = old


@pytest.fixture
def scene(addon, tmp_path):
    """An empty scene whose panel settings capture the sample clip with the built-in models."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    s = bpy.context.scene
    s.fullbody.source_type = "VIDEO"
    s.fullbody.video_path = str(CLIP)
    s.fullbody.output_dir = str(tmp_path)
    st = bpy.context.window_manager.fullbody_status
    st.error, st.message, st.recording = "", "", False
    yield s
    session.shutdown()


def run_pumped(until=None, job_timeout: float = 300.0, interval: float = 0.02) -> int:
    """Call the registered timer function as Blender's event loop would, until it unregisters
    (or ``until()`` is true).  Returns the number of callbacks.  ``job_timeout`` only stops a
    hung test."""
    assert bpy.app.timers.is_registered(session._timer)
    calls, end = 0, time.monotonic() + job_timeout
    while time.monotonic() < end:
        nxt = session._timer()
        calls += 1
        if nxt is None or (until is not None and until()):
            return calls
        time.sleep(interval)
    raise AssertionError("the job did not finish")


def keyed_frames(arm) -> int:
    """Keyframes on the root bone's first rotation channel of the avatar's action."""
    ad = arm.animation_data
    assert ad is not None and ad.action is not None, "no action on the avatar"
    bag = ad.action.layers[0].strips[0].channelbag(ad.action_slot)
    fc = next(f for f in bag.fcurves if f.data_path.endswith("rotation_quaternion"))
    return len(fc.keyframe_points)


def test_panel_capture_imports_keys_from_the_real_runtime(scene):
    st = bpy.context.window_manager.fullbody_status
    assert bpy.ops.fullbody.capture_video() == {"FINISHED"}
    job = session.active_job()
    progress: list[float] = []
    job.on_progress = lambda j: progress.append(j.frames)
    calls = run_pumped()
    assert st.error == "", st.error
    assert job.output and Path(job.output).parent == Path(scene.fullbody.output_dir)
    cap = load_capture(job.output)
    assert cap.num_frames == CLIP_FRAMES and cap["valid"].mean() > 0.9
    assert np.abs(cap["betas"]).sum() > 0 and cap["scale"] > 0 and cap["face_identity"].size
    arm = avatar.find_avatar(bpy.context)
    assert arm is not None and keyed_frames(arm) == CLIP_FRAMES
    assert scene.frame_end - scene.frame_start + 1 == CLIP_FRAMES
    assert f"imported {CLIP_FRAMES} frames" in st.message and not st.running
    # the main thread was served between the runtime's events: more timer calls than progress events,
    # and progress came in over several calls, never backwards
    assert progress == sorted(progress) and len(progress) >= 2 and calls > len(progress)
    assert not job.client.alive


def test_stop_half_way_imports_the_partial_capture(scene):
    st = bpy.context.window_manager.fullbody_status
    assert scene.fullbody.feet          # the feet stage on (the default): it writes frames as they come
    assert bpy.ops.fullbody.capture_video() == {"FINISHED"}
    job = session.active_job()
    run_pumped(until=lambda: job.frames >= 35)
    assert bpy.ops.fullbody.stop_capture() == {"FINISHED"}
    run_pumped()
    assert job.cancelled and st.error == "", st.error
    cap = load_capture(job.output)
    assert 35 <= cap.num_frames < CLIP_FRAMES, cap.num_frames
    assert keyed_frames(avatar.find_avatar(bpy.context)) == cap.num_frames
    assert cap["foot_contact"].any() and cap["ground_plane"].any()   # the feet stage ran and its span was kept
    assert "partial" in st.message


def test_runtime_killed_half_way_imports_what_it_finished(scene):
    st = bpy.context.window_manager.fullbody_status
    assert scene.fullbody.feet          # the feet stage on (the default): it writes frames as they come
    assert bpy.ops.fullbody.capture_video() == {"FINISHED"}
    job = session.active_job()
    run_pumped(until=lambda: job.frames >= 40)
    reported = job.frames
    os.kill(job.client.proc.pid, signal.SIGKILL)
    run_pumped()
    assert "killed by signal 9 (SIGKILL)" in st.error, st.error
    cap = load_capture(job.output)
    # at most the unflushed chunk is lost (chunk_frames = 8); the per-clip values were on disk already
    assert reported - 8 < cap.num_frames < CLIP_FRAMES, (reported, cap.num_frames)
    # provisional labels and plane on disk: before the feet stage's first ground plane (the still feet of
    # the clip's first 2 s) they come from a provisional plane of the still feet so far
    assert cap["foot_contact"].any() and cap["ground_plane"].any()
    assert np.abs(cap["betas"]).sum() > 0 and cap["face_identity"].size and np.abs(cap["face_identity"]).sum() > 0
    arm = avatar.find_avatar(bpy.context)
    assert keyed_frames(arm) == cap.num_frames
    assert np.allclose(np.asarray(arm["betas"])[:16], cap["betas"][:16], atol=1e-5)
    assert "partial" in st.message


def test_live_on_a_video_source_drives_the_avatar_and_records_keys(scene):
    st = bpy.context.window_manager.fullbody_status
    scene.fullbody.face = False         # a body-only avatar keeps this test short
    assert bpy.ops.fullbody.live_capture() == {"FINISHED"}
    job = session.active_job()
    arm = avatar.find_avatar(bpy.context)
    assert arm is not None and st.live
    rest = np.array([b.rotation_quaternion[:] for b in arm.pose.bones])
    run_pumped(until=lambda: job.frames >= 20)
    applied = np.array([b.rotation_quaternion[:] for b in arm.pose.bones])
    assert np.abs(applied - rest).max() > 0.05      # frames were applied: the avatar is posed
    start = scene.frame_current
    st.recording = True
    seen = job.frames
    run_pumped(until=lambda: job.frames >= seen + 15)
    st.recording = False
    recorded = job.frames - seen
    run_pumped(until=lambda: job.frames > seen + recorded)   # the next frame flushes the recording
    keys = keyed_frames(arm)
    assert recorded <= keys <= recorded + 2, (recorded, keys)   # frames already queued may join
    assert arm.animation_data.action.frame_range[0] == start
    session.stop_job()
    run_pumped()
    assert st.error == "" and job.latency_ms is not None and job.latency_ms > 0


def test_live_without_a_runtime_leaves_the_scene_alone(scene, tmp_path, monkeypatch):
    monkeypatch.setenv(preferences.RUNTIME_PYTHON_ENV, str(tmp_path / "no-python"))
    before = (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.armatures))
    with pytest.raises(RuntimeError):   # operators report ERROR -> RuntimeError in bpy as a module
        bpy.ops.fullbody.live_capture()
    assert (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.armatures)) == before
    assert "no-python" in bpy.context.window_manager.fullbody_status.error


def test_runtime_setup_creates_a_venv_and_shows_a_failing_install_in_the_log(tmp_path):
    """Offline here, so pip cannot install: the job must end with a clear error and a log."""
    steps = runtime_setup.setup_steps(tmp_path / "venv", base_python=sys.executable,
                                      pip_args=("--no-index", "--find-links", str(tmp_path)))
    job = runtime_setup.SetupJob(steps=steps[:1] + steps[2:], log_path=tmp_path / "setup.log").start()
    assert job.wait(120)
    assert runtime_setup.venv_python(tmp_path / "venv").exists()        # step 1 really ran
    assert job.error and "install pinned runtime requirements failed" in job.error
    log = (tmp_path / "setup.log").read_text()
    assert "torch" in log and "[1/2] create virtual environment" in log
    assert job.progress == pytest.approx(0.5)
    lines = job.poll()
    assert lines and lines[0].startswith("== [1/2]")


def test_requirements_shipped_for_setup_are_the_pinned_ones():
    reqs = runtime_setup.requirements_dir()
    assert (reqs / "runtime.txt").read_text() == (REPO / "requirements" / "runtime.txt").read_text()
    assert "torch==" in (reqs / "runtime.txt").read_text()


def test_real_serve_health_check():
    check = HealthCheck(serve_argv(sys.executable), timeout=90).run()
    assert check.error is None, check.error
    summary = check.summary()
    assert "torch 2." in summary and "detector" in summary and "mediapipe 0.10" in summary


def test_real_serve_unopenable_camera_is_reported(scene, tmp_path):
    job = CaptureJob(RuntimeClient(serve_argv(sys.executable)),
                     {"cmd": "capture", "source": 57, "output": str(tmp_path / "cam.npz"), "options": {}},
                     on_finish=operators._on_capture_finished)
    before = sorted(o.name for o in bpy.data.objects)
    session.start_job(job)
    run_pumped(job_timeout=45)
    err = bpy.context.window_manager.fullbody_status.error
    assert "57" in err and "camera" in err.lower()
    assert sorted(o.name for o in bpy.data.objects) == before
