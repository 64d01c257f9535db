"""The subprocess protocol between the Blender extension and ``model_runtime serve``.

Both sides import this module (it needs only the standard library).  Transport:
one JSON object per line, UTF-8.  Requests go to the runtime's stdin; events
come back on its stdout.  Human-readable logs go to stderr, never stdout.

Requests (Blender -> runtime), field ``cmd``:
  ``{"cmd": "capture", "id": str, "source": str|int, "output": path, "overwrite": bool, "options": {...}}``
      source: a video path, an image folder, or a camera index (int).
      output: a ``.npz`` in an existing, writable folder; an existing file is an error
              unless ``overwrite`` (default false), and a failed run never replaces it.
      options: the fields of :class:`model_runtime.core.options.CaptureOptions` (the one schema;
               unknown keys, wrong types and out-of-range or non-finite values are an
               ``error`` event with kind ``OptionError`` and exit_code 2 naming the key).
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
               (also for a line that is not a valid request: id null, kind ProtocolError;
               the server and a running job go on)
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


#: longest line accepted (a request is a few hundred bytes; a live frame event ~10 KB)
MAX_LINE_BYTES: Final[int] = 1 << 20


def decode(line: bytes | str) -> dict[str, Any]:
    """One line -> one message; anything that is not a valid message raises :class:`ProtocolError`
    (bad UTF-8, not JSON, too deep or too long, not an object, unknown ``cmd``/``event``)."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(f"line of {len(line)} bytes is longer than {MAX_LINE_BYTES}")
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ProtocolError(f"not UTF-8: {line[:60]!r} ({e.reason} at byte {e.start})") from None
    try:
        msg = json.loads(line)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"not a JSON line: {line[:200]!r} ({e})") from None
    except RecursionError:
        raise ProtocolError(f"JSON nested too deeply: {line[:60]!r}...") from None
    except ValueError as e:   # e.g. an integer with more digits than Python converts
        raise ProtocolError(f"not a valid JSON line: {line[:60]!r} ({e})") from None
    if not isinstance(msg, dict) or not ({"cmd", "event"} & msg.keys()):
        raise ProtocolError(f"message without 'cmd' or 'event': {line[:200]!r}")
    if "cmd" in msg and (not isinstance(msg["cmd"], str) or msg["cmd"] not in COMMANDS):
        raise ProtocolError(f"unknown command {msg['cmd']!r}")
    if "event" in msg and (not isinstance(msg["event"], str) or msg["event"] not in EVENTS):
        raise ProtocolError(f"unknown event {msg['event']!r}")
    return msg


def event(kind: Event, /, **fields) -> dict[str, Any]:
    return {"event": kind, **fields}


def request(cmd: Command, /, **fields) -> dict[str, Any]:
    return {"cmd": cmd, **fields}


def write(stream: IO[bytes], msg: dict[str, Any]) -> None:
    stream.write(encode(msg))
    stream.flush()

