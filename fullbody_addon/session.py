"""The one capture/live/setup job of this Blender session, pumped by ``bpy.app.timers``.

Background threads (in :mod:`runtime_client`, :mod:`runtime_setup`) only fill
queues; :func:`_timer` runs on Blender's main thread every
:data:`TIMER_INTERVAL` seconds, drains them, updates the status shown in the
panel and the status bar, and imports the result when a job ends.
"""
from __future__ import annotations

import traceback
from pathlib import Path

import bpy

from . import runtime_client
from .runtime_client import CaptureJob, RuntimeClient

TIMER_INTERVAL = 0.05  # seconds
LOG_TEXT = "fullbody_runtime_log"
SETUP_LOG_TEXT = "fullbody_setup_log"

_job: CaptureJob | None = None
_setup = None  # runtime_setup.SetupJob
_health = None  # runtime_client.HealthCheck


def status(context=None):
    return (context or bpy.context).window_manager.fullbody_status


def active_job() -> CaptureJob | None:
    return _job if _job is not None and not _job.finished else None


def _status_bar(text: str | None) -> None:
    ws = getattr(bpy.context, "workspace", None)
    if ws is not None:
        try:
            ws.status_text_set(text)
        except Exception:  # no window (background mode)
            pass
    for win in getattr(bpy.context.window_manager, "windows", ()):
        for area in win.screen.areas:
            if area.type in ("VIEW_3D", "STATUSBAR", "PREFERENCES"):
                area.tag_redraw()


def _log(text: str) -> None:
    t = bpy.data.texts.get(LOG_TEXT) or bpy.data.texts.new(LOG_TEXT)
    t.write(text.rstrip() + "\n")


def start_job(job: CaptureJob, live: bool = False) -> CaptureJob:
    """Start ``job`` and the timer that pumps it. Raises RuntimeNotSetUp if the process cannot start."""
    global _job
    if active_job() is not None:
        raise RuntimeError("a capture is already running: stop it first")
    st = status()
    st.error, st.message, st.progress, st.live, st.latency_ms = "", "starting runtime", 0.0, live, 0.0
    job.start()
    _job = job
    st.running = True
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TIMER_INTERVAL, persistent=True)
    return job


def stop_job() -> None:
    if _job is not None and not _job.finished:
        _job.cancel()


def pump() -> float | None:
    """One timer step: drain the running job (and setup) and update the status. Main thread."""
    global _job
    st = status()
    busy = False
    if _job is not None:
        try:
            running = _job.tick()
        except Exception:  # never let an exception unregister the timer silently
            _log(traceback.format_exc())
            running = False
            _job.finished = True
            st.error = "internal error while handling the runtime's results; see the text block " + LOG_TEXT
        st.progress = 100.0 * _job.progress
        st.message = _job.message
        if _job.latency_ms is not None:
            st.latency_ms = _job.latency_ms
        if running:
            busy = True
            _status_bar(f"Full body capture: {_job.message}  ({st.progress:.0f}%)  Esc/Stop to cancel")
        else:
            st.running = False
            st.live = False
            st.recording = False
            _status_bar(None)
            _job.client.close(timeout=2.0)
            _job = None
    if _setup is not None:
        busy = _pump_setup(st) or busy
    if _health is not None:
        busy = _pump_health(st) or busy
    return TIMER_INTERVAL if busy else None


def _timer():
    return pump()


def finish_capture(job: CaptureJob, import_fn) -> None:
    """``on_finish`` of a capture: show the error, import what was captured."""
    st = status()
    if job.traceback:
        _log(job.traceback)
    if job.error:
        st.error = job.error
    if job.output and (Path(job.output).exists() or Path(job.output + ".partial").exists()):
        try:
            summary = import_fn(job.output)
            kept = f"imported {summary['frames']} frames"
            job.message = kept + (" (partial)" if job.error or job.cancelled else "")
        except Exception as e:  # a bad partial file must not break the session
            st.error = (st.error + "; " if st.error else "") + f"import failed: {e}"
    elif job.error:
        job.message = "nothing was captured"


# --- runtime setup ------------------------------------------------------------------------
def start_setup(job) -> None:
    global _setup
    _setup = job.start()
    st = status()
    st.setup_running, st.setup_progress, st.setup_message = True, 0.0, "starting"
    t = bpy.data.texts.get(SETUP_LOG_TEXT) or bpy.data.texts.new(SETUP_LOG_TEXT)
    t.clear()
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TIMER_INTERVAL, persistent=True)


def cancel_setup() -> None:
    if _setup is not None:
        _setup.cancel()


def _pump_setup(st) -> bool:
    global _setup
    lines = _setup.poll()
    if lines:
        t = bpy.data.texts.get(SETUP_LOG_TEXT) or bpy.data.texts.new(SETUP_LOG_TEXT)
        t.write("\n".join(lines) + "\n")
    st.setup_progress = 100.0 * _setup.progress
    st.setup_message = _setup.step_title
    if not _setup.finished:
        _status_bar(f"Setting up the capture runtime: {_setup.step_title}")
        return True
    st.setup_running = False
    st.setup_message = f"setup failed: {_setup.error}" if _setup.error else "runtime ready: run the health check"
    _status_bar(None)
    _setup = None
    return False


def start_health(check) -> None:
    global _health
    _health = check.start()
    status().health = "checking the runtime..."
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=TIMER_INTERVAL, persistent=True)


def _pump_health(st) -> bool:
    global _health
    if not _health.finished:
        return True
    st.health = _health.summary()
    _health = None
    return False


def shutdown() -> None:
    """Unregister: stop every process this session started and the timer."""
    global _job, _setup
    if _job is not None:
        _job.client.close(timeout=2.0)
        _job = None
    if _setup is not None:
        _setup.cancel()
        _setup = None
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)


def new_client(python: str) -> RuntimeClient:
    return RuntimeClient(runtime_client.serve_argv(runtime_client.check_interpreter(python)))
