"""The subprocess side of the add-on: start ``model_runtime serve``, talk JSON lines.

Threads never touch bpy.  A reader thread decodes the runtime's stdout into
protocol events and puts them on a queue; a second one keeps the tail of its
stderr (logs and, if it dies, the traceback).  The main thread drains the queue
from a ``bpy.app.timers`` callback (:meth:`RuntimeClient.poll` is that
callback's work and never blocks), so Blender stays responsive while a capture
runs.  When the process exits, a synthetic ``exit`` event carries its return
code and stderr tail, so a crash is reported like any runtime error.
"""
from __future__ import annotations

import collections
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Sequence

from ._runtime import RUNTIME_PATH, protocol

EXIT_EVENT = "exit"          # synthetic event: the process ended (fields: code, stderr)
STDERR_TAIL_LINES = 60


class RuntimeNotSetUp(RuntimeError):
    """No usable interpreter for the runtime (preferences: 'Set up runtime')."""


def serve_argv(python: str) -> list[str]:
    """The command line of the runtime server for an interpreter path."""
    return [python, "-m", "model_runtime", "serve"]


def check_interpreter(python: str | os.PathLike | None) -> str:
    """Validate the configured interpreter path; returns it as str or raises :class:`RuntimeNotSetUp`."""
    if not python:
        raise RuntimeNotSetUp("the capture runtime is not set up: open Preferences > Add-ons > Full Body Capture "
                              "and press 'Set up runtime', or point it at an existing Python")
    p = Path(python)
    if not p.is_file() or not os.access(p, os.X_OK):
        raise RuntimeNotSetUp(f"runtime interpreter {p} does not exist or is not executable: "
                              "run 'Set up runtime' in the add-on preferences")
    return str(p)


#: stderr lines of libraries (MediaPipe/absl/glog, TensorFlow Lite, Python warnings) that are never
#: the runtime's own error
_NOISE = re.compile(r"^([IWEF]\d{4} |INFO: |WARNING: |W0000|I0000|.*Warning: |\s)")
_ERROR = re.compile(r"^(error: |[\w.]*(Error|Exception|Interrupt)\b.*:|.* ERROR )")


def runtime_error_line(stderr_tail: str) -> str:
    """The runtime's own last error in its stderr tail: a ``error: ...`` line, an exception line
    or an ERROR log line; else the last line that is not library noise; else ''."""
    lines = [ln.rstrip() for ln in stderr_tail.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if _ERROR.match(ln):
            return ln[len("error: "):] if ln.startswith("error: ") else ln
    return next((ln for ln in reversed(lines) if not _NOISE.match(ln)), "")


def exit_message(code: int | None, stderr_tail: str, when: str) -> str:
    """One line for a runtime that ended: 'killed by signal 9 (SIGKILL)' or 'exited with code N',
    and its own last error (:func:`runtime_error_line`)."""
    if code is not None and code < 0:
        try:
            name = f" ({signal.Signals(-code).name})"
        except ValueError:
            name = ""
        how = f"was killed by signal {-code}{name}"
    else:
        how = f"exited with code {code}"
    last = runtime_error_line(stderr_tail)
    return f"the runtime {how} {when}" + (f": {last}" if last else "")


class RuntimeClient:
    """One runtime process.

    argv: the command (default :func:`serve_argv`); the runtime package shipped
    with the add-on is put first on ``PYTHONPATH``.  Events are dicts as defined
    in :mod:`model_runtime.core.protocol`, plus ``{"event": "exit", "code", "stderr"}``.
    """

    def __init__(self, argv: Sequence[str], env: dict | None = None, cwd: str | None = None):
        self.argv = list(argv)
        self._env = env
        self._cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.events: queue.Queue[dict] = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._threads: list[threading.Thread] = []
        self._write_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "RuntimeClient":
        env = dict(os.environ if self._env is None else self._env)
        env["PYTHONPATH"] = RUNTIME_PATH + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONHOME", None)  # Blender sets it for its own Python; the runtime has its own
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env, cwd=self._cwd, bufsize=0,
                                         creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
        except OSError as e:
            raise RuntimeNotSetUp(f"cannot start the runtime ({self.argv[0]}): {e}") from e
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True, name="fullbody-stdout"),
                         threading.Thread(target=self._read_stderr, daemon=True, name="fullbody-stderr")]
        for t in self._threads:
            t.start()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, msg: dict) -> None:
        """Write one request; a dead process is reported by the ``exit`` event, not raised here."""
        if not self.alive:
            return
        try:
            with self._write_lock:
                protocol.write(self.proc.stdin, msg)
        except (BrokenPipeError, OSError):
            pass

    def poll(self, max_events: int = 1000) -> list[dict]:
        """Events received so far (non-blocking; at most ``max_events`` per call)."""
        out = []
        try:
            while len(out) < max_events:
                out.append(self.events.get_nowait())
        except queue.Empty:
            pass
        return out

    def close(self, timeout: float = 3.0) -> None:
        """Ask the server to shut down, then terminate/kill it if it does not."""
        if self.proc is None:
            return
        if self.alive:
            self.send(protocol.request("shutdown"))
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        for t in self._threads:
            t.join(timeout)

    # -- reader threads (no bpy here) --------------------------------------------------------
    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            if not line.strip():
                continue
            try:
                msg = protocol.decode(line)
            except protocol.ProtocolError as e:
                msg = protocol.event("log", level="warning", message=f"runtime wrote a non-protocol line: {e}")
            msg["_received"] = time.perf_counter()
            self.events.put(msg)
        code = self.proc.wait()
        for t in self._threads[1:]:
            t.join(2.0)  # let the stderr tail be complete before reporting the exit
        self.events.put({"event": EXIT_EVENT, "code": code, "stderr": "\n".join(self.stderr_tail)})

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in iter(self.proc.stderr.readline, b""):
            self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())


class CaptureJob:
    """A capture (or live session) on one :class:`RuntimeClient`, driven by :meth:`tick`.

    ``tick()`` is what the ``bpy.app.timers`` callback calls: it drains events,
    updates :attr:`progress`/:attr:`message`, and calls ``on_frame`` (live) and,
    once, ``on_finish(job)`` when the job ends (done, error, cancel or crash).
    After the end, :attr:`output` names the capture file to import (the partial
    one after a cancel or crash, when any frame was finished) and :attr:`error`
    the runtime's message (None on success).
    """

    CANCEL_GRACE_S = 10.0

    def __init__(self, client: RuntimeClient, request: dict, on_finish: Callable[["CaptureJob"], None] | None = None,
                 on_frame: Callable[[dict], None] | None = None, on_progress: Callable[["CaptureJob"], None] | None = None):
        self.client = client
        self.request = dict(request)
        self.id = self.request.setdefault("id", uuid.uuid4().hex[:12])
        self.on_finish, self.on_frame, self.on_progress = on_finish, on_frame, on_progress
        self.progress = 0.0
        self.frames = 0
        self.total = 0
        self.fps = 0.0
        self.message = "starting runtime"
        self.hello: dict | None = None
        self.error: str | None = None
        self.traceback: str | None = None
        self.output: str | None = None
        self.cancelled = False
        self.finished = False
        self.latency_ms: float | None = None
        self.ticks = 0
        self._requested_output = self.request.get("output")
        self._cancel_deadline: float | None = None

    def start(self) -> "CaptureJob":
        if self.client.proc is None:
            self.client.start()
        self.client.send(self.request)
        return self

    def cancel(self) -> None:
        """Ask the runtime to stop; what it finished is kept and imported.

        A runtime that has not confirmed within :attr:`CANCEL_GRACE_S` is
        terminated by :meth:`tick` (its partial capture is still imported)."""
        self.cancelled = True
        self.message = "cancelling"
        self._cancel_deadline = time.monotonic() + self.CANCEL_GRACE_S
        self.client.send(protocol.request("cancel", id=self.id))

    def tick(self) -> bool:
        """Drain pending events (main thread). Returns True while the job runs."""
        self.ticks += 1
        if self.finished:
            return False
        for ev in self.client.poll():
            self._handle(ev)
            if self.finished:
                return False
        if self._cancel_deadline is not None and time.monotonic() > self._cancel_deadline:
            self.client.close(timeout=1.0)
            self.error = f"the runtime did not stop within {self.CANCEL_GRACE_S:.0f} s of the cancel and was terminated"
            self.output = self._partial_output()
            self.message = "cancelled"
            self._finish()
        return not self.finished

    def _handle(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "hello":
            self.hello = ev
            self.message = "runtime started"
        elif kind == "progress" and ev.get("id", self.id) == self.id:
            self.frames = int(ev.get("frame", self.frames))
            self.total = int(ev.get("total") or 0)
            self.fps = float(ev.get("fps") or 0.0)
            self.progress = self.frames / self.total if self.total else 0.0
            self.message = ev.get("message") or (f"frame {self.frames}/{self.total}" if self.total else f"frame {self.frames}")
            if self.on_progress:
                self.on_progress(self)
        elif kind == "frame" and ev.get("id", self.id) == self.id:
            self.frames += 1
            received = ev.get("_received")
            if received is not None:  # runtime latency + time in our queue until this tick
                self.latency_ms = float(ev.get("latency_ms") or 0.0) + 1000.0 * (time.perf_counter() - received)
            if self.on_frame:
                self.on_frame(ev)
        elif kind == "log":
            self.message = str(ev.get("message", ""))[:200]
        elif kind == "done" and ev.get("id", self.id) == self.id:
            self.output = ev.get("output") or self._requested_output
            self.cancelled = bool(ev.get("cancelled", self.cancelled))
            self.progress = 1.0 if not self.cancelled else self.progress
            self.message = f"cancelled after {ev.get('frames', self.frames)} frames" if self.cancelled \
                else f"done: {ev.get('frames', self.frames)} frames"
            self._finish()
        elif kind == "error" and ev.get("id", self.id) in (self.id, None):
            self.error = str(ev.get("message") or "the runtime reported an error")
            self.traceback = ev.get("traceback")
            self.output = ev.get("output") or self._partial_output()
            self.message = f"error: {self.error}"
            self._finish()
        elif kind == EXIT_EVENT:
            tail = (ev.get("stderr") or "").strip()
            self.error = exit_message(ev.get("code"), tail, "during the capture")
            self.traceback = tail or None
            self.output = self._partial_output()
            self.message = f"error: {self.error}"
            self._finish()

    def _partial_output(self) -> str | None:
        """The requested output if the runtime left a finished or recoverable capture there."""
        if not self._requested_output:
            return None
        out = Path(self._requested_output)
        part = Path(str(out) + ".partial")
        return str(out) if out.exists() or (part / "static.npz").exists() else None

    def _finish(self) -> None:
        self.finished = True
        if self.on_finish:
            self.on_finish(self)


class HealthCheck:
    """Ask a fresh runtime for its ``health`` event in a background thread.

    :meth:`summary` is one line for the panel: versions, torch device, detector.
    """

    def __init__(self, argv: Sequence[str], timeout: float = 120.0):
        self.argv, self.timeout = list(argv), timeout
        self.result: dict | None = None
        self.error: str | None = None
        self.finished = False

    def start(self) -> "HealthCheck":
        threading.Thread(target=self.run, daemon=True, name="fullbody-health").start()
        return self

    def run(self) -> "HealthCheck":
        client = RuntimeClient(self.argv)
        try:
            client.start()
            client.send(protocol.request("health"))
            end = time.monotonic() + self.timeout
            hello = None
            while time.monotonic() < end and self.result is None and self.error is None:
                try:
                    ev = client.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if ev["event"] == "hello":
                    hello = ev
                elif ev["event"] == "health":
                    self.result = {**(hello or {}), **ev}
                elif ev["event"] == "error":
                    self.error = str(ev.get("message"))
                elif ev["event"] == EXIT_EVENT:
                    self.error = exit_message(ev.get("code"), ev.get("stderr") or "", "before answering")
            if self.result is None and self.error is None:
                self.error = f"no answer within {self.timeout:.0f} s"
        except RuntimeNotSetUp as e:
            self.error = str(e)
        finally:
            client.close(timeout=3.0)
            self.finished = True
        return self

    def summary(self) -> str:
        if self.error:
            return f"Runtime not healthy: {self.error}"
        r = self.result or {}
        det = "ok" if r.get("detector_ok") else "NOT available"
        return (f"runtime {r.get('runtime_version', '?')} (Python {r.get('python', '?')}) | "
                f"torch {r.get('torch', '?')} on {r.get('device', '?')}"
                f"{' (CUDA ' + str(r['cuda']) + ')' if r.get('cuda') else ''} | "
                f"mediapipe {r.get('mediapipe', '?')}, detector {det} | "
                f"body {r.get('body_model', '?')}, face {r.get('face_model', '?')}")
