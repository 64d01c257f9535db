"""The subprocess protocol between the Blender extension and ``model_runtime serve``.

Both sides import this module (it needs only the standard library).  Transport:
one JSON object per line, UTF-8.  Requests go to the runtime's stdin; events
come back on its stdout.  Human-readable logs go to stderr, never stdout.

Requests (Blender -> runtime), field ``cmd``:
  ``{"cmd": "capture", "id": str, "source": str|int, "output": path, "options": {...}}``
      source: a video path, an image folder, or a camera index (int).
      options: start, end, device, detector, body_model, face_model, fov,
               smoothing (min_cutoff, beta), hands, face, fill ("hold"|"interpolate").
               (all keys of ``model_runtime.pipeline.pipeline.CaptureOptions``; also
               calibration, max_gap, shape_window, folder_fps, model_complexity.)
  ``{"cmd": "live", "id": str, "camera": int, "options": {...}}``
      streams ``frame`` events; ``record`` on/off is decided on the Blender side.
      Optional: ``"output": path`` also records the frames into a capture file
      (kept, with every finished frame, if the camera disconnects); ``"source": path``
      instead of ``camera`` streams a video/folder the same way (preview).
  ``{"cmd": "cancel", "id": str}``   stop the job; the partial capture is kept.
  ``{"cmd": "health"}``              versions, torch device, detector status.
  ``{"cmd": "shutdown"}``

Events (runtime -> Blender), field ``event``:
  ``hello``    {protocol, runtime_version, python, torch, cuda, mediapipe}
  ``health``   {torch, device, cuda, mediapipe, detector_ok, body_model, face_model}
  ``progress`` {id, frame, total, fps, message}
  ``frame``    {id, index, time, valid, pose_6d (52*6 list), transl (3), betas, scale,
                expression (E list), latency_ms}  (live mode)
  ``done``     {id, output, frames, cancelled}  (cancelled: output = the partial capture or null)
  ``error``    {id, message, kind, exit_code, traceback, output (partial capture or null)}
  ``log``      {level, message}
"""
from __future__ import annotations

import json
from typing import IO, Any, Final, Literal

PROTOCOL_VERSION: Final[int] = 1

Command = Literal["capture", "live", "cancel", "health", "shutdown"]
Event = Literal["hello", "health", "progress", "frame", "done", "error", "log"]
COMMANDS: Final[frozenset[str]] = frozenset(("capture", "live", "cancel", "health", "shutdown"))
EVENTS: Final[frozenset[str]] = frozenset(("hello", "health", "progress", "frame", "done", "error", "log"))


class ProtocolError(ValueError):
    pass


def encode(msg: dict[str, Any]) -> bytes:
    """One message -> one line of UTF-8 JSON (no NaN allowed)."""
    return (json.dumps(msg, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def decode(line: bytes | str) -> dict[str, Any]:
    if isinstance(line, bytes):
        line = line.decode("utf-8")
    try:
        msg = json.loads(line)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"not a JSON line: {line[:200]!r} ({e})") from e
    if not isinstance(msg, dict) or not ({"cmd", "event"} & msg.keys()):
        raise ProtocolError(f"message without 'cmd' or 'event': {line[:200]!r}")
    if "cmd" in msg and msg["cmd"] not in COMMANDS:
        raise ProtocolError(f"unknown command {msg['cmd']!r}")
    if "event" in msg and msg["event"] not in EVENTS:
        raise ProtocolError(f"unknown event {msg['event']!r}")
    return msg


def event(kind: Event, /, **fields) -> dict[str, Any]:
    return {"event": kind, **fields}


def request(cmd: Command, /, **fields) -> dict[str, Any]:
    return {"cmd": cmd, **fields}


def write(stream: IO[bytes], msg: dict[str, Any]) -> None:
    stream.write(encode(msg))
    stream.flush()

