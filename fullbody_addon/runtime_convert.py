"""Ask the runtime to build an avatar file when Blender's Python cannot (no bpy here).

Blender's own Python has numpy but not scipy, so a Basel face ``.mat`` cannot
be read inside Blender.  :func:`avatar_file_via_runtime` runs the runtime's
interpreter once::

    python -m model_runtime model export --format npz --out AVATAR.npz --body B --face F --person P.json

and returns the path of the avatar file (:mod:`model_runtime.models.avatar_file`),
which the add-on reads with numpy alone.  Files are cached by interpreter,
runtime folder, the model files' identity (path, size, mtime) and the person's
coefficients, so creating the same avatar again does not start the runtime.  Errors name the model file:
:class:`~fullbody_addon.runtime_client.RuntimeNotSetUp` when there is no
interpreter, :class:`ModelFileError` when the runtime rejects the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ._runtime import RUNTIME_PATH, errors
from .runtime_client import RuntimeNotSetUp, check_interpreter

__all__ = ["CONVERT_TIMEOUT_S", "avatar_file_via_runtime", "cache_dir"]

#: a BFM face (35k vertices, 64 expressions) takes a few seconds; a stuck runtime is stopped
CONVERT_TIMEOUT_S = 300.0


def cache_dir() -> Path:
    """Where converted avatar files are kept: ``$FULLBODY_AVATAR_CACHE``, else in the system temp folder."""
    return Path(os.environ.get("FULLBODY_AVATAR_CACHE") or Path(tempfile.gettempdir()) / "fullbody_avatar_cache")


def _file_identity(spec: str) -> list:
    if spec == "builtin":
        return [spec]
    p = Path(spec)
    st = p.stat() if p.exists() else None
    return [str(p.resolve()), st.st_size if st else -1, st.st_mtime_ns if st else -1]


def avatar_file_via_runtime(python: str | None, body_spec: str, face_spec: str, person: dict[str, np.ndarray],
                            timeout: float = CONVERT_TIMEOUT_S) -> Path:
    """Avatar ``.npz`` for ``body_spec``/``face_spec`` (``"builtin"`` or a path) and ``person``
    (``betas``, ``identity``, ``albedo`` vectors), written by the runtime at ``python``."""
    try:
        python = check_interpreter(python)
    except RuntimeNotSetUp as e:
        raise RuntimeNotSetUp(f"{face_spec}: this face model is read by the capture runtime, and {e}") from e
    params = {k: np.asarray(v, np.float64).reshape(-1).tolist() for k, v in person.items()}
    key = hashlib.sha1(json.dumps([python, RUNTIME_PATH, _file_identity(body_spec), _file_identity(face_spec), params],
                                  sort_keys=True).encode()).hexdigest()[:20]
    out = cache_dir() / f"avatar_{key}.npz"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    person_file = out.with_name(out.stem + "_person.json")
    person_file.write_text(json.dumps(params))
    argv = [python, "-m", "model_runtime", "model", "export", "--format", "npz", "--out", str(out),
            "--body", body_spec, "--face", face_spec, "--person", str(person_file)]
    env = dict(os.environ)
    env["PYTHONPATH"] = RUNTIME_PATH + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONHOME", None)  # Blender sets it for its own Python; the runtime has its own
    try:
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                           creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    except subprocess.TimeoutExpired:
        raise errors.ModelFileError(face_spec, None, f"was not converted by the runtime within {timeout:.0f} s") from None
    except OSError as e:
        raise RuntimeNotSetUp(f"{face_spec}: cannot start the runtime ({python}): {e}") from e
    finally:
        person_file.unlink(missing_ok=True)
    if r.returncode != 0 or not out.is_file():
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
        msg = next((ln[len("error: "):] for ln in reversed(lines) if ln.startswith("error: ")),
                   lines[-1] if lines else f"exit code {r.returncode}")
        raise errors.ModelFileError(face_spec, None, f"could not be converted by the runtime: {msg}")
    return out
