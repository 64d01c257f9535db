"""``python -m model_runtime serve``: the JSON-lines server the Blender extension talks to.

The message schema is :mod:`model_runtime.protocol` (imported by both sides).
One job (``capture`` or ``live``) runs at a time in a worker thread; the main
thread keeps reading stdin, so ``cancel``, ``health`` and ``shutdown`` are
answered while a job runs.  Events go to stdout (one JSON object per line,
serialised by a lock); logs go to stderr.

Job outcomes:

* finished: ``done {id, output, frames, cancelled: false}``;
* cancelled: ``done {..., cancelled: true, output: <partial capture or null>}``;
* failed: ``error {id, message, kind, exit_code, traceback, output: <partial or null>}``
  (e.g. a camera that disconnects: kind ``SourceLostError``, exit_code 7).

Loaded components (detector, IK, body/face models) are cached between jobs
with the same options.  stdin closing (Blender quit) cancels the job and exits.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import protocol as P
from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, CancelledError, RuntimeErrorBase

log = logging.getLogger("model_runtime.serve")
RUNTIME_VERSION = "0.1.0"
PROGRESS_INTERVAL_S = 0.25


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="INFO", help="stderr log level (default INFO)")


def versions() -> dict[str, Any]:
    """Runtime, Python, torch, CUDA and MediaPipe versions (for ``hello``)."""
    import torch

    try:
        import mediapipe

        mp_version = mediapipe.__version__
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        mp_version = f"unavailable ({e})"
    return dict(protocol=P.PROTOCOL_VERSION, runtime_version=RUNTIME_VERSION, python=platform.python_version(),
                torch=torch.__version__, cuda=bool(torch.cuda.is_available()), mediapipe=mp_version)


class Server:
    """Reads requests from ``inp``, writes events to ``out`` (both binary streams)."""

    def __init__(self, inp: IO[bytes], out: IO[bytes]):
        self.inp, self.out = inp, out
        self._lock = threading.Lock()
        self._job: threading.Thread | None = None
        self._job_id: str | None = None
        self._cancel = threading.Event()
        self._busy = threading.Event()     # cleared just before a job's last event is sent
        self._pipes: dict[tuple, Any] = {}

    # ---- output
    def send(self, event: P.Event, /, **fields) -> None:
        msg = P.event(event, **fields)
        with self._lock:
            P.write(self.out, msg)

    def _finish(self, event: P.Event, /, **fields) -> None:
        """A job's last event: the server is free again once the client can see it."""
        self._busy.clear()
        self.send(event, **fields)

    # ---- main loop
    def serve(self) -> int:
        self.send("hello", **versions())
        for raw in self.inp:
            if not raw.strip():
                continue
            try:
                req = P.decode(raw)
                if "cmd" not in req:
                    raise P.ProtocolError("a request needs 'cmd'")
            except P.ProtocolError as e:
                self.send("error", id=None, message=str(e), kind="ProtocolError", exit_code=2,
                          traceback=None, output=None)
                continue
            if not self.handle(req):
                break
        self.stop_job()
        self._close_pipes()
        return EXIT_OK

    def handle(self, req: dict) -> bool:
        """Handle one request; False means shut down."""
        cmd = req["cmd"]
        if cmd == "shutdown":
            return False
        if cmd == "cancel":
            if self._busy.is_set() and req.get("id") in (None, self._job_id):
                self._cancel.set()
            else:
                self.send("log", level="warning", message=f"cancel: no running job with id {req.get('id')!r}")
            return True
        if cmd == "health":
            self.send("health", **self.health())
            return True
        # capture / live
        job_id = str(req.get("id", ""))
        if self._busy.is_set():
            self.send("error", id=job_id, message=f"busy with job {self._job_id!r}; cancel it first",
                      kind="Busy", exit_code=2, traceback=None, output=None)
            return True
        self._cancel = threading.Event()
        self._job_id = job_id
        self._busy.set()
        self._job = threading.Thread(target=self._run_job, args=(req,), name=f"job-{job_id}", daemon=True)
        self._job.start()
        return True

    def stop_job(self) -> None:
        if self._job is not None and self._job.is_alive():
            self._cancel.set()
            self._job.join(timeout=30.0)

    def health(self) -> dict[str, Any]:
        import torch

        v = versions()
        info: dict[str, Any] = dict(torch=v["torch"], cuda=v["cuda"], mediapipe=v["mediapipe"],
                                    device="cuda" if v["cuda"] else "cpu")
        try:
            from .pipeline.detector import make_detector

            make_detector("mediapipe").close()
            info["detector_ok"] = True
        except Exception as e:  # noqa: BLE001 - health reports, never raises
            info["detector_ok"] = False
            info["detector_error"] = str(e)
        for name in ("body_model", "face_model"):
            try:
                if name == "body_model":
                    from .body_model import load_body_model

                    info[name] = load_body_model("builtin").source
                else:
                    from .face_model import load_face_model

                    info[name] = str(getattr(load_face_model("builtin"), "source", "builtin"))
            except Exception as e:  # noqa: BLE001
                info[name] = None
                info[f"{name}_error"] = str(e)
        del torch
        return info

    # ---- jobs
    def _pipeline(self, options):
        from .pipeline.pipeline import build_pipeline

        key = (options.detector, options.model_complexity, options.device, options.body_model,
               options.face_model, options.face)
        pipe = self._pipes.get(key)
        if pipe is None:
            pipe = build_pipeline(options)
            self._pipes[key] = pipe
        pipe.options = options
        return pipe

    def _close_pipes(self) -> None:
        for pipe in self._pipes.values():
            pipe.detector.close()
        self._pipes.clear()

    def _run_job(self, req: dict) -> None:
        from .pipeline.pipeline import CaptureOptions
        from .pipeline.sources import open_source

        job_id = self._job_id
        cancel = self._cancel
        live = req["cmd"] == "live"
        output = req.get("output")
        try:
            options = CaptureOptions.from_mapping(req.get("options") or {})
            # live: a camera index; a video/folder given as "source" is streamed the same way (preview)
            source_spec = req.get("camera", req.get("source")) if live else req.get("source")
            if source_spec is None:
                raise ValueError(f"'{req['cmd']}' needs {'camera' if live else 'source'}")
            camera = req.get("camera")
            if live and "camera" in req and (isinstance(camera, bool) or not isinstance(camera, int)):
                raise ValueError("'live' needs an integer 'camera' index")
            if not live and not output:
                raise ValueError("'capture' needs 'output' (a .npz path)")
            if output:
                Path(output).parent.mkdir(parents=True, exist_ok=True)
            source = open_source(source_spec, start=options.start, end=options.end, fps=options.folder_fps)
            try:
                pipe = self._pipeline(options)
                last = [0.0]

                def on_progress(done: int, total: int | None, fps: float) -> None:
                    now = time.monotonic()
                    if now - last[0] >= PROGRESS_INTERVAL_S or (total is not None and done >= total):
                        last[0] = now
                        self.send("progress", id=job_id, frame=done, total=total, fps=round(fps, 2),
                                  message=f"{done}/{total if total is not None else '?'} frames")

                on_frame = None
                if live:
                    def on_frame(rec: dict) -> None:
                        self.send("frame", **frame_event(job_id, rec))

                result = pipe.run(source, output, cancel=cancel, on_progress=on_progress, on_frame=on_frame,
                                  live=live)
            finally:
                source.close()
            self._finish("done", id=job_id, output=str(result.output) if result.output else None,
                         frames=result.frames, cancelled=False)
        except CancelledError as e:
            partial = getattr(e, "partial_output", None)
            self._finish("done", id=job_id, output=str(partial) if partial else None,
                         frames=_frames_in(partial), cancelled=True)
        except BaseException as e:  # noqa: BLE001 - every failure becomes an error event
            partial = getattr(e, "partial_output", None)
            code = (e.exit_code if isinstance(e, RuntimeErrorBase)
                    else EXIT_USAGE if isinstance(e, ValueError) else EXIT_INTERNAL)
            self._finish("error", id=job_id, message=str(e), kind=type(e).__name__, exit_code=code,
                         traceback=traceback.format_exc(), output=str(partial) if partial else None)


def frame_event(job_id: str | None, rec: dict) -> dict[str, Any]:
    """A live-mode ``frame`` event from a pipeline record (JSON-safe lists)."""
    from . import rotations as R

    pose = R.matrix_to_rot6d(R.quat_wxyz_to_matrix(rec["quat"]))
    betas, scale = rec.get("betas", np.zeros(16)), rec.get("scale", 1.0)
    return dict(id=job_id, index=int(rec["index"]), time=float(rec["time"]), valid=bool(rec["valid"]),
                pose_6d=_list(pose), transl=_list(rec["transl"]), betas=_list(betas), scale=float(scale),
                expression=_list(rec["expression"]),
                latency_ms=round(1000.0 * (time.perf_counter() - rec["t_read"]), 2))


def _list(a) -> list:
    return np.nan_to_num(np.asarray(a, np.float64)).reshape(-1).round(6).tolist()


def _frames_in(path) -> int:
    if not path:
        return 0
    try:
        with np.load(path, allow_pickle=False) as z:
            return int(z["valid"].shape[0])
    except Exception:  # noqa: BLE001
        return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Events need a clean stdout: keep the real one for the protocol and send everything
    # else written to fd 1 (prints, native libraries' logs) to stderr.
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    try:
        return Server(sys.stdin.buffer, proto).serve()
    finally:
        proto.close()
