"""``model_runtime serve`` as the Blender extension uses it: a real subprocess, JSON lines."""
from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from model_runtime.core import protocol as P
from model_runtime.core.capture_file import load_capture
from model_runtime.core.errors import EXIT_INPUT_MISSING, EXIT_INPUT_UNREADABLE

REPO = Path(__file__).resolve().parents[1]
TENNIS = "GVHMR/docs/example_video/tennis.mp4"


class ServeProcess:
    """A running ``serve`` subprocess with a thread collecting its events."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "model_runtime", "serve", "--log-level", "WARNING"],
                                     cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.events: queue.Queue = queue.Queue()
        self.raw_lines: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.raw_lines.append(line)
            self.events.put(P.decode(line))     # every stdout line must be a protocol message
        self.events.put(None)

    def send(self, msg: dict) -> None:
        self.proc.stdin.write(P.encode(msg))
        self.proc.stdin.flush()

    def expect(self, pred, timeout: float = 60.0, collect: list | None = None) -> dict:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for an event")
            ev = self.events.get(timeout=left)
            if ev is None:
                raise AssertionError("serve exited")
            if collect is not None:
                collect.append(ev)
            if pred(ev):
                return ev

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send(P.request("shutdown"))
            except BrokenPipeError:
                pass
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def server():
    s = ServeProcess()
    hello = s.expect(lambda e: e["event"] == "hello", timeout=120)
    s.hello = hello
    yield s
    assert s.close() == 0


def test_hello_reports_versions(server):
    h = server.hello
    assert h["protocol"] == P.PROTOCOL_VERSION
    for key in ("runtime_version", "python", "torch", "cuda", "mediapipe"):
        assert key in h
    assert h["mediapipe"].startswith("0.10")


def test_missing_file_gives_error_event(server, tmp_path):
    server.send(P.request("capture", id="m1", source=str(tmp_path / "nope.mp4"), output=str(tmp_path / "o.npz")))
    ev = server.expect(lambda e: e.get("id") == "m1")
    assert ev["event"] == "error" and ev["kind"] == "InputMissingError"
    assert ev["exit_code"] == EXIT_INPUT_MISSING and "nope.mp4" in ev["message"]
    assert ev["traceback"] is None and ev["output"] is None   # a known error is one line, no traceback


def test_corrupt_file_gives_error_event(server, tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    server.send(P.request("capture", id="c1", source=str(bad), output=str(tmp_path / "o.npz")))
    ev = server.expect(lambda e: e.get("id") == "c1")
    assert ev["event"] == "error" and ev["exit_code"] == EXIT_INPUT_UNREADABLE and "random.mp4" in ev["message"]


def test_camera_that_cannot_be_opened(server):
    server.send(P.request("live", id="cam", camera=99, options={}))
    ev = server.expect(lambda e: e.get("id") == "cam")
    assert ev["event"] == "error" and ev["exit_code"] == EXIT_INPUT_MISSING and "camera 99" in ev["message"]


def test_bad_requests_are_answered_not_fatal(server, tmp_path):
    server.proc.stdin.write(b"this is not json\n")
    server.proc.stdin.flush()
    ev = server.expect(lambda e: e["event"] == "error" and e["kind"] == "ProtocolError")
    assert "not a JSON line" in ev["message"]
    server.send(P.request("capture", id="o1", source="x.mp4", output=str(tmp_path / "o.npz"),
                          options={"colour": "blue"}))
    ev = server.expect(lambda e: e.get("id") == "o1")
    assert ev["event"] == "error" and "colour" in ev["message"] and ev["exit_code"] == 2
    server.send(P.request("cancel", id="nothing-running"))
    ev = server.expect(lambda e: e["event"] == "log")
    assert "no running job" in ev["message"]


def test_capture_progress_and_done(server, realdata, tmp_path):
    out = tmp_path / "cap.npz"
    server.send(P.request("capture", id="ok", source=str(realdata / TENNIS), output=str(out),
                          options={"start": 40, "end": 52, "face": False}))
    seen: list = []
    done = server.expect(lambda e: e.get("id") == "ok" and e["event"] in ("done", "error"), timeout=120,
                         collect=seen)
    assert done["event"] == "done", done
    assert done["frames"] == 12 and not done["cancelled"] and done["output"] == str(out)
    progress = [e for e in seen if e["event"] == "progress"]
    assert progress and progress[-1]["frame"] == 12 and progress[-1]["total"] == 12
    cap = load_capture(out)
    assert cap.num_frames == 12 and cap["valid"].all()


def test_live_frames_and_cancel_keeps_partial(server, realdata, tmp_path):
    """A video streamed in live mode: frame events with latency; cancel keeps the recorded frames."""
    out = tmp_path / "live.npz"
    server.send(P.request("live", id="lv", source=str(realdata / TENNIS), output=str(out),
                          options={"face": False}))
    frames = []
    for _ in range(5):
        frames.append(server.expect(lambda e: e.get("id") == "lv" and e["event"] == "frame", timeout=120))
    server.send(P.request("cancel", id="lv"))
    done = server.expect(lambda e: e.get("id") == "lv" and e["event"] in ("done", "error"), timeout=60)
    assert done["event"] == "done" and done["cancelled"] is True
    f = frames[-1]
    assert len(f["pose_6d"]) == 52 * 6 and len(f["transl"]) == 3 and len(f["betas"]) == 16
    assert f["latency_ms"] > 0 and [e["index"] for e in frames] == list(range(5))
    cap = load_capture(done["output"])
    assert 5 <= cap.num_frames < 312 and done["frames"] == cap.num_frames
