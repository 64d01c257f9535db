"""Provision the capture runtime in its own virtual environment (no bpy).

Steps, each a real subprocess whose output is streamed line by line into a
log file and a queue the UI drains from a timer:

1. ``<base python> -m venv <dir>``            (the base is Blender's Python unless set)
2. ``<venv python> -m pip install --upgrade pip``
3. ``<venv python> -m pip install -r runtime.txt -c constraints.txt``

Nothing is ever installed into Blender's own Python.  The requirement files are
the repository's ``requirements/`` shipped inside the extension zip.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ._runtime import ADDON_DIR


def requirements_dir() -> Path:
    """``requirements/`` in the extension (zip layout) or the repository checkout."""
    for cand in (ADDON_DIR / "requirements", ADDON_DIR.parent / "requirements"):
        if (cand / "runtime.txt").is_file():
            return cand
    raise FileNotFoundError(f"requirements/runtime.txt not found next to {ADDON_DIR}; rebuild the extension zip")


def venv_python(venv_dir: Path | str) -> Path:
    venv_dir = Path(venv_dir)
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup_steps(venv_dir: Path | str, base_python: str | None = None, reqs: Path | None = None,
                pip_args: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """``[(title, argv), ...]`` for :class:`SetupJob`."""
    reqs = reqs or requirements_dir()
    py = str(venv_python(venv_dir))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off", *pip_args]
    return [
        ("create virtual environment", [base_python or sys.executable, "-m", "venv", str(venv_dir)]),
        ("upgrade pip", pip + ["--upgrade", "pip"]),
        ("install pinned runtime requirements",
         pip + ["-r", str(reqs / "runtime.txt"), "-c", str(reqs / "constraints.txt")]),
    ]


@dataclass
class SetupJob:
    """Runs :func:`setup_steps` in a background thread; :meth:`poll` is for the UI timer.

    ``log_path`` receives every line; :attr:`progress` is 0..1 by finished steps;
    :attr:`error` is the failing step with the last log lines, None on success.
    """

    steps: list[tuple[str, list[str]]]
    log_path: Path
    lines: "queue.Queue[str]" = field(default_factory=queue.Queue)
    progress: float = 0.0
    step_title: str = ""
    error: str | None = None
    finished: bool = False
    _tail: list = field(default_factory=list)
    _proc: subprocess.Popen | None = None
    _cancel: bool = False

    def start(self) -> "SetupJob":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        threading.Thread(target=self._run, daemon=True, name="fullbody-setup").start()
        return self

    def cancel(self) -> None:
        self._cancel = True
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def wait(self, timeout: float | None = None) -> bool:
        end = None if timeout is None else time.monotonic() + timeout
        while not self.finished and (end is None or time.monotonic() < end):
            time.sleep(0.05)
        return self.finished

    def poll(self, max_lines: int = 500) -> list[str]:
        out = []
        try:
            while len(out) < max_lines:
                out.append(self.lines.get_nowait())
        except queue.Empty:
            pass
        return out

    def _emit(self, log, text: str) -> None:
        log.write(text + "\n")
        log.flush()
        self.lines.put(text)
        self._tail = (self._tail + [text])[-15:]

    def _run(self) -> None:
        env = dict(os.environ)
        env.pop("PYTHONHOME", None)
        env.pop("PYTHONPATH", None)
        with open(self.log_path, "w", encoding="utf-8") as log:
            for i, (title, argv) in enumerate(self.steps):
                if self._cancel:
                    self.error = "cancelled"
                    break
                self.step_title = title
                self._emit(log, f"== [{i + 1}/{len(self.steps)}] {title}: {' '.join(argv)}")
                try:
                    self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
                except OSError as e:
                    self.error = f"{title}: cannot start {argv[0]} ({e})"
                    self._emit(log, self.error)
                    break
                for raw in iter(self._proc.stdout.readline, b""):
                    self._emit(log, raw.decode("utf-8", "replace").rstrip())
                code = self._proc.wait()
                if code != 0:
                    tail = "\n".join(self._tail[-6:])
                    self.error = f"{title} failed (exit code {code}); log: {self.log_path}\n{tail}"
                    self._emit(log, f"== failed with exit code {code}")
                    break
                self.progress = (i + 1) / len(self.steps)
            else:
                self._emit(log, "== runtime ready")
        self.finished = True
