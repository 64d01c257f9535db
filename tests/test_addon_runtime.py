"""The add-on's runtime side with real processes: crash mid-capture, timer pumping,
live frames, runtime setup, and (when this build has it) the real ``serve``.

Children here are real Python processes speaking the real protocol
(:mod:`model_runtime.protocol`), started by the add-on's own client; the
crashing one writes real capture chunks with :class:`CaptureWriter` and then
dies with a traceback, as a runtime that crashes mid-capture would.
"""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import blender_helpers as H  # noqa: E402
import fullbody_addon  # noqa: E402
from fullbody_addon import avatar, axes, operators, runtime_setup, session  # noqa: E402
from fullbody_addon.runtime_client import CaptureJob, HealthCheck, RuntimeClient, serve_argv  # noqa: E402
from model_runtime import rotations  # noqa: E402
from model_runtime.capture_file import load_capture  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent('''
    """A runtime that answers one capture/live request from a capture file, then {ending}."""
    import sys, time
    import numpy as np
    from model_runtime import protocol
    from model_runtime.capture_file import CaptureWriter, load_capture, STATIC_KEYS, PER_FRAME_KEYS
    out = sys.stdout.buffer
    protocol.write(out, protocol.event("hello", protocol=protocol.PROTOCOL_VERSION, runtime_version="test",
                                       python=sys.version.split()[0], torch=None, cuda=None, mediapipe=None))
    req = protocol.decode(sys.stdin.buffer.readline())
    src = load_capture(sys.argv[1])
    T, crash_at, delay = src.num_frames, int(sys.argv[2]), float(sys.argv[3])
    if req["cmd"] == "capture":
        w = CaptureWriter(req["output"], static={{k: src[k] for k in STATIC_KEYS if k != "version"}}, chunk_frames=8)
    for t in range(T):
        if t == crash_at:
            raise RuntimeError("CUDA out of memory while fitting frame %d" % t)
        if req["cmd"] == "capture":
            w.append(**{{k: src[k][t] for k in PER_FRAME_KEYS}})
            protocol.write(out, protocol.event("progress", id=req["id"], frame=t + 1, total=T, fps=1 / delay, message=None))
        else:
            protocol.write(out, protocol.event("frame", id=req["id"], index=t, time=t / 30, valid=True,
                           pose_6d=src["pose_6d"][t].ravel().tolist(), transl=src["transl"][t].tolist(),
                           betas=src["betas"].tolist(), scale=float(src["scale"]), expression=[], latency_ms=12.5))
        time.sleep(delay)
    if req["cmd"] == "capture":
        w.close()
    protocol.write(out, protocol.event("done", id=req["id"], output=req.get("output"), frames=T, cancelled=False))
''')


@pytest.fixture(scope="module")
def addon():
    fullbody_addon.register()
    yield
    fullbody_addon.unregister()


@pytest.fixture
def scene(addon, tmp_path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    s = bpy.context.scene
    body = H.synthetic_body_model()
    s.fullbody.body_model = "SMPLH"
    s.fullbody.face = False  # the test body has no face region: body-only avatar
    s.fullbody.smplh_path = str(H.write_smplh_npz(tmp_path / "smplh_test.npz", body))
    st = bpy.context.window_manager.fullbody_status
    st.error, st.message = "", ""
    yield s
    session.shutdown()


def child_argv(tmp_path: Path, source: Path, crash_at: int, delay: float) -> list[str]:
    script = tmp_path / "child_runtime.py"
    script.write_text(CHILD.format(ending="crashes" if crash_at >= 0 else "finishes"))
    return [sys.executable, str(script), str(source), str(crash_at), str(delay)]


def run_pumped(job_timeout: float = 30.0, interval: float = 0.01) -> tuple[int, float]:
    """Call the registered timer function as Blender's event loop would, until it unregisters.

    bpy as a module has no event loop, so nothing calls ``bpy.app.timers`` by itself;
    this loop is that event loop.  Returns (callbacks, longest callback in seconds while
    the job ran; the last one, which imports the result, is excluded).
    """
    assert bpy.app.timers.is_registered(session._timer)
    calls, longest, end = 0, 0.0, time.monotonic() + job_timeout
    while time.monotonic() < end:
        t0 = time.perf_counter()
        nxt = session._timer()
        calls += 1
        if nxt is None:
            return calls, longest
        longest = max(longest, time.perf_counter() - t0)
        time.sleep(interval)
    raise AssertionError("the job did not finish")


def test_runtime_dying_mid_capture_reports_and_imports_what_was_captured(scene, tmp_path):
    source = H.write_capture(tmp_path / "source.npz", T=40, seed=2)
    out = tmp_path / "captured.npz"
    job = CaptureJob(RuntimeClient(child_argv(tmp_path, source, crash_at=21, delay=0.02)),
                     {"cmd": "capture", "source": "clip.mp4", "output": str(out), "options": {}},
                     on_finish=operators._on_capture_finished)
    before = len(bpy.data.objects)
    session.start_job(job)
    assert bpy.context.window_manager.fullbody_status.running
    calls, longest = run_pumped()
    st = bpy.context.window_manager.fullbody_status
    # the runtime's own message (last traceback line) reaches the panel
    assert "CUDA out of memory while fitting frame 21" in st.error and "exited with code 1" in st.error
    assert "Traceback" in bpy.data.texts[session.LOG_TEXT].as_string()
    # the 16 frames in finished chunks (of 8) were recovered and imported
    assert out.exists() and load_capture(out).num_frames == 16
    assert len(bpy.data.objects) == before + 2 and scene.frame_end == 16
    assert not st.running and "partial" in st.message
    assert not job.client.alive


def test_timer_keeps_running_while_a_capture_runs(scene, tmp_path):
    """The timer callback never blocks: Blender's main thread stays free during a 1 s capture."""
    source = H.write_capture(tmp_path / "source.npz", T=40, seed=3)
    out = tmp_path / "ok.npz"
    job = CaptureJob(RuntimeClient(child_argv(tmp_path, source, crash_at=-1, delay=0.025)),
                     {"cmd": "capture", "source": "clip.mp4", "output": str(out), "options": {}},
                     on_finish=operators._on_capture_finished)
    progress_seen = []
    job.on_progress = lambda j: progress_seen.append(j.progress)
    session.start_job(job)
    t0 = time.monotonic()
    calls, longest = run_pumped(interval=0.01)
    wall = time.monotonic() - t0
    assert wall > 0.8 and calls > 0.5 * wall / 0.01, (calls, wall)  # served every ~10 ms throughout
    assert longest < 0.05, f"a timer callback blocked the main thread for {longest * 1000:.0f} ms"
    assert progress_seen and progress_seen == sorted(progress_seen)
    assert bpy.context.window_manager.fullbody_status.error == ""
    assert load_capture(out).num_frames == 40 and scene.frame_end == 40


def test_stop_cancels_and_imports_the_partial_capture(scene, tmp_path):
    """Stop on a runtime that does not confirm the cancel: terminated after the grace period,
    what it finished is imported."""
    source = H.write_capture(tmp_path / "source.npz", T=200, seed=4)
    out = tmp_path / "stopped.npz"
    job = CaptureJob(RuntimeClient(child_argv(tmp_path, source, crash_at=-1, delay=0.01)),
                     {"cmd": "capture", "source": "clip.mp4", "output": str(out), "options": {}},
                     on_finish=operators._on_capture_finished)
    job.CANCEL_GRACE_S = 0.3
    session.start_job(job)
    while job.frames < 20:
        session._timer()
        time.sleep(0.01)
    assert bpy.ops.fullbody.stop_capture() == {"FINISHED"}
    run_pumped()
    st = bpy.context.window_manager.fullbody_status
    assert "terminated" in st.error and not job.client.alive
    n = load_capture(out).num_frames
    assert 16 <= n < 200 and scene.frame_end == n


def test_live_frames_drive_the_avatar_and_record_keys(scene, tmp_path):
    from test_addon_blender import world_vertices

    source = H.write_capture(tmp_path / "source.npz", T=12, seed=8)
    cap = load_capture(source)
    assert bpy.ops.fullbody.import_capture(filepath=str(source)) == {"FINISHED"}  # avatar with this shape
    arm = avatar.find_avatar(bpy.context)
    arm.animation_data.action = None
    body = H.synthetic_body_model()

    def expected(t):
        R = rotations.rot6d_to_matrix(cap["pose_6d"][t:t + 1].astype(np.float64))
        v, _, _ = body.forward(cap["betas"][None].astype(np.float64), R, cap["transl"][t:t + 1].astype(np.float64))
        return axes.camera_points_to_blender(v[0])

    st = bpy.context.window_manager.fullbody_status
    for record in (False, True):
        driver = operators.LiveDriver(arm, avatar.avatar_mesh(arm))
        job = CaptureJob(RuntimeClient(child_argv(tmp_path, source, crash_at=-1, delay=0.01)),
                         {"cmd": "live", "camera": 0, "options": {}},
                         on_frame=driver.on_frame, on_finish=lambda j, d=driver: d.flush())
        st.recording = record
        session.start_job(job, live=True)
        assert st.live
        run_pumped()
        assert st.error == ""
        assert job.latency_ms is not None and job.latency_ms >= 12.5 and st.latency_ms == pytest.approx(job.latency_ms)
        if not record:  # the last live frame posed the avatar exactly as the model would
            assert arm.animation_data is None or arm.animation_data.action is None
            assert np.abs(world_vertices(avatar.avatar_mesh(arm)) - expected(11)).max() < 1e-3
    # recording wrote one key per frame from the current frame on, and they replay the live poses
    fc = arm.animation_data.action.layers[0].strips[0].channelbag(arm.animation_data.action_slot).fcurves[0]
    assert len(fc.keyframe_points) == 12
    scene.frame_set(scene.frame_current + 7)
    assert np.abs(world_vertices(avatar.avatar_mesh(arm)) - expected(7)).max() < 1e-3


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


NO_SERVE = not (REPO / "model_runtime" / "serve.py").exists()


@pytest.mark.skipif(NO_SERVE, reason="model_runtime.serve not in this build yet")
def test_real_serve_health_check():
    check = HealthCheck(serve_argv(sys.executable), timeout=90).run()
    assert check.error is None, check.error
    summary = check.summary()
    assert "torch 2." in summary and "detector" in summary and "mediapipe 0.10" in summary


@pytest.mark.skipif(NO_SERVE, reason="model_runtime.serve not in this build yet")
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
