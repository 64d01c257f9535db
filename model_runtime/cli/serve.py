"""``python -m model_runtime serve``: the JSON-lines server the Blender extension talks to.

The message schema is :mod:`model_runtime.core.protocol` (imported by both sides).
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
with the same options.  stdin closing (Blender quit) cancels the job and exits;
so does SIGTERM (the job's finished frames are kept, exit code 8).  A line that
is not a valid request (bad UTF-8, not JSON, nested too deeply, wrong types)
gets an ``error`` event and the server, and any running job, go on.
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
from typing import IO, Any

import numpy as np

from ..core import protocol
from ..core.errors import (EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, CancelledError, ModelFileError,
                           RuntimeErrorBase)
from ..core.safe_npz import npz_members
from .main import sigterm_as_interrupt

log = logging.getLogger("model_runtime.cli.serve")
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
    return dict(protocol=protocol.PROTOCOL_VERSION, runtime_version=RUNTIME_VERSION, python=platform.python_version(),
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
    def send(self, event: protocol.Event, /, **fields) -> None:
        msg = protocol.event(event, **fields)
        with self._lock:
            protocol.write(self.out, msg)

    def _finish(self, event: protocol.Event, /, **fields) -> None:
        """A job's last event: the server is free again once the client can see it."""
        self._busy.clear()
        self.send(event, **fields)

    # ---- main loop
    def serve(self) -> int:
        self.send("hello", **versions())
        interrupted = False
        try:
            for raw in self.inp:
                if not raw.strip():
                    continue
                try:
                    req = protocol.decode(raw)
                    if "cmd" not in req:
                        raise protocol.ProtocolError("a request needs 'cmd'")
                    if not self.handle(req):
                        break
                except protocol.ProtocolError as e:
                    self.send("error", id=None, message=str(e), kind="ProtocolError", exit_code=EXIT_USAGE,
                              traceback=None, output=None)
                except Exception as e:  # noqa: BLE001 - a bad request never ends the server
                    log.exception("request failed")
                    self.send("error", id=None, message=f"bad request: {e}", kind=type(e).__name__,
                              exit_code=EXIT_USAGE, traceback=traceback.format_exc(), output=None)
        except KeyboardInterrupt:   # SIGTERM or Ctrl-C: stop the job like a cancel, keep its frames
            interrupted = True
        busy = self._busy.is_set()
        self.stop_job()
        self._close_pipes()
        return EXIT_CANCELLED if interrupted and busy else EXIT_OK

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
        job_id = req.get("id", "")
        if not isinstance(job_id, (str, int)) or isinstance(job_id, bool):
            raise protocol.ProtocolError(f"'id' must be a string, got {job_id!r}")
        job_id = str(job_id)
        if self._busy.is_set():
            self.send("error", id=job_id, message=f"busy with job {self._job_id!r}; cancel it first",
                      kind="Busy", exit_code=2, traceback=None, output=None)
            return True
        try:
            checked = self.check_job(req)
        except RuntimeErrorBase as e:
            self.send("error", id=job_id, message=str(e), kind=type(e).__name__, exit_code=e.exit_code,
                      traceback=None, output=None)
            return True
        self._cancel = threading.Event()
        self._job_id = job_id
        self._busy.set()
        self._job = threading.Thread(target=self._run_job, args=(req, *checked), name=f"job-{job_id}", daemon=True)
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
            from ..detectors import make_detector

            make_detector("mediapipe").close()
            info["detector_ok"] = True
        except Exception as e:  # noqa: BLE001 - health reports, never raises
            info["detector_ok"] = False
            info["detector_error"] = str(e)
        for name in ("body_model", "face_model"):
            try:
                if name == "body_model":
                    from ..models.load import load_body_model

                    info[name] = load_body_model("builtin").source
                else:
                    from ..models.load import load_face_model

                    info[name] = str(getattr(load_face_model("builtin"), "source", "builtin"))
            except Exception as e:  # noqa: BLE001
                info[name] = None
                info[f"{name}_error"] = str(e)
        del torch
        return info

    # ---- jobs
    def _pipeline(self, options):
        from ..capture.pipeline import build_pipeline

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

    @staticmethod
    def check_job(req: dict):
        """Validate a capture/live request before any model loads (main thread, so a usage error
        comes back at once): -> ``(options, source_spec, output)``; raises :class:`OptionError`
        or :class:`OutputError` naming the field."""
        from ..core.capture_file import check_output
        from ..core.options import CaptureOptions, OptionError

        live = req["cmd"] == "live"
        output = req.get("output")
            # everything is checked before a model loads: options, source, output
        options = CaptureOptions.from_mapping(req.get("options"))
        # live: a camera index; a video/folder given as "source" is streamed the same way (preview)
        source_spec = req.get("camera", req.get("source")) if live else req.get("source")
        if source_spec is None:
            raise OptionError("camera" if live else "source", f"is required by '{req['cmd']}'")
        if isinstance(source_spec, bool) or not isinstance(source_spec, (str, int)):
            raise OptionError("source", f"must be a path or a camera index, got {source_spec!r}")
        camera = req.get("camera")
        if live and "camera" in req and (isinstance(camera, bool) or not isinstance(camera, int)):
            raise OptionError("camera", f"must be an integer camera index, got {camera!r}")
        if not live and not output:
            raise OptionError("output", "is required by 'capture' (a .npz path)")
        if output is not None and not isinstance(output, str):
            raise OptionError("output", f"must be a path, got {output!r}")
        overwrite = req.get("overwrite", False)
        if not isinstance(overwrite, bool):
            raise OptionError("overwrite", f"must be true or false, got {overwrite!r}")
        if output:
            check_output(output, overwrite=overwrite)
        return options, source_spec, output

    def _run_job(self, req: dict, options, source_spec, output) -> None:
        from ..capture.sources import open_source

        job_id = self._job_id
        cancel = self._cancel
        live = req["cmd"] == "live"
        try:
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
                    def on_frame(rec) -> None:
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
            known = isinstance(e, RuntimeErrorBase)
            code = e.exit_code if known else EXIT_INTERNAL
            if not known:
                log.exception("job %s failed", job_id)
            self._finish("error", id=job_id, message=str(e) if known else f"internal error: {type(e).__name__}: {e}",
                         kind=type(e).__name__, exit_code=code, traceback=None if known else traceback.format_exc(),
                         output=str(partial) if partial else None)


def frame_event(job_id: str | None, rec) -> dict[str, Any]:
    """A live-mode ``frame`` event from a written :class:`~model_runtime.capture.records.FrameRecord`
    (JSON-safe lists)."""
    from ..core import rotations

    pose = rotations.matrix_to_rot6d(rotations.quat_wxyz_to_matrix(rec.quat))
    betas = rec.betas if rec.betas is not None else np.zeros(16)
    scale = rec.scale if rec.scale is not None else 1.0
    return dict(id=job_id, index=int(rec.index), time=float(rec.time), valid=bool(rec.valid),
                pose_6d=_list(pose), transl=_list(rec.transl), betas=_list(betas), scale=float(scale),
                expression=_list(rec.expression),
                latency_ms=round(1000.0 * (time.perf_counter() - rec.t_read), 2))


def _list(a) -> list:
    return np.nan_to_num(np.asarray(a, np.float64)).reshape(-1).round(6).tolist()


def _frames_in(path) -> int:
    if not path:
        return 0
    try:
        return int(npz_members(path)["valid"][0][0])   # from the header: no array is read
    except (ModelFileError, KeyError, IndexError):
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
    sigterm_as_interrupt()   # like Ctrl-C: cancel the job, keep what it finished, exit
    try:
        return Server(sys.stdin.buffer, proto).serve()
    finally:
        proto.close()
