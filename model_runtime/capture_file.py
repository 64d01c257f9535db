"""The capture file: a versioned ``.npz`` written incrementally.

While a capture runs, finished frames go to ``OUT.npz.partial/`` in small
chunk files (each written to a temporary name and renamed, so a chunk is either
complete or absent) plus ``static.npz`` with the per-clip values (shape,
identity, albedo...) as they are currently estimated.  :meth:`CaptureWriter.close`
consolidates them into ``OUT.npz`` and removes the folder.  If the process dies
first, :func:`recover` (or :func:`load_capture`, which calls it) builds the
``.npz`` from whatever chunks are complete: every finished frame is kept.

This module needs only numpy, so Blender can read captures without torch.

Keys (T frames, K keypoints, E expressions) - see :data:`PER_FRAME_KEYS` and
:data:`STATIC_KEYS`.  ``pose_6d[t, j]`` is the first two columns of joint j's
rotation relative to its parent, column after column (:mod:`rotations`).
``transl`` is in metres in the camera frame (x right, y down, z forward).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Mapping

import numpy as np

from .errors import ModelFileError

CAPTURE_VERSION: Final[int] = 1

#: per-frame arrays: name -> (shape after T with symbolic dims, dtype)
PER_FRAME_KEYS: Final[dict[str, tuple[tuple, str]]] = {
    "pose_6d": ((52, 6), "float32"),
    "transl": ((3,), "float32"),
    "valid": ((), "bool"),
    "keypoints_2d": (("K", 3), "float32"),
    "keypoints_3d": (("K", 3), "float32"),
    "face_expression": (("E",), "float32"),
    "face_sh": ((27,), "float32"),
}
#: per-clip values
STATIC_KEYS: Final[tuple[str, ...]] = (
    "version", "fps", "image_size", "camera_K", "joint_names", "betas", "scale",
    "keypoint_names", "face_identity", "face_albedo", "expression_names",
    "body_model", "face_model",
)
REQUIRED_KEYS: Final[tuple[str, ...]] = STATIC_KEYS + tuple(PER_FRAME_KEYS)


def partial_dir(path: Path | str) -> Path:
    return Path(str(path) + ".partial")


def _atomic_savez(target: Path, arrays: Mapping[str, np.ndarray]) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


class CaptureWriter:
    """Append frames; flush every ``chunk_frames``; ``close()`` writes the final ``.npz``.

    Usage::

        w = CaptureWriter(out, static={...})
        w.append(pose_6d=..., transl=..., valid=..., ...)   # once per frame
        w.update_static(betas=...)                           # any time
        w.close()                                            # or w.abort() keeps partial
    """

    def __init__(self, path: Path | str, static: Mapping[str, object], chunk_frames: int = 32):
        self.path = Path(path)
        self.dir = partial_dir(self.path)
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        self.chunk_frames = int(chunk_frames)
        self._static: dict[str, np.ndarray] = {"version": np.int32(CAPTURE_VERSION)}
        self._buf: dict[str, list] = {k: [] for k in PER_FRAME_KEYS}
        self._n_chunks = 0
        self.frames_written = 0
        self.update_static(**static)

    def update_static(self, **values) -> None:
        for k, v in values.items():
            if k not in STATIC_KEYS:
                raise KeyError(f"unknown static capture key {k!r}")
            self._static[k] = np.asarray(v)
        _atomic_savez(self.dir / "static.npz", self._static)

    def append(self, **frame) -> None:
        missing = set(PER_FRAME_KEYS) - set(frame)
        if missing:
            raise KeyError(f"frame lacks {sorted(missing)}")
        for k, (_, dt) in PER_FRAME_KEYS.items():
            self._buf[k].append(np.asarray(frame[k], dtype=dt))
        if len(self._buf["valid"]) >= self.chunk_frames:
            self.flush()

    def flush(self) -> None:
        n = len(self._buf["valid"])
        if not n:
            return
        arrays = {k: np.stack(v) for k, v in self._buf.items()}
        _atomic_savez(self.dir / f"chunk_{self._n_chunks:06d}.npz", arrays)
        self._n_chunks += 1
        self.frames_written += n
        self._buf = {k: [] for k in PER_FRAME_KEYS}

    def close(self) -> Path:
        """Flush and consolidate into ``path``; returns it."""
        self.flush()
        return recover(self.path)

    def abort(self) -> Path | None:
        """Keep what is finished (used on cancel/crash): same as close when frames exist."""
        self.flush()
        if self.frames_written == 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            return None
        return recover(self.path)


def recover(path: Path | str) -> Path:
    """Consolidate ``path.partial/`` into ``path`` (streamed chunk by chunk) and remove it."""
    path = Path(path)
    d = partial_dir(path)
    static_f = d / "static.npz"
    if not static_f.exists():
        raise ModelFileError(str(d), "static.npz", "is missing: nothing to recover")
    with np.load(static_f, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    chunks = sorted(d.glob("chunk_*.npz"))
    parts: dict[str, list] = {k: [] for k in PER_FRAME_KEYS}
    for c in chunks:
        try:
            with np.load(c, allow_pickle=False) as z:
                loaded = {k: z[k] for k in PER_FRAME_KEYS}
        except Exception:  # a chunk that was being written when the process died
            break
        for k, v in loaded.items():
            parts[k].append(v)
    for k, (shape, dt) in PER_FRAME_KEYS.items():
        if parts[k]:
            out[k] = np.concatenate(parts[k])
        else:
            concrete = tuple(0 if isinstance(s, str) else s for s in shape)
            out[k] = np.zeros((0, *concrete), dtype=dt)
    _atomic_savez(path, out)
    shutil.rmtree(d, ignore_errors=True)
    return path


@dataclass(frozen=True)
class Capture:
    """A loaded capture; ``data`` maps every key of :data:`REQUIRED_KEYS` to an array."""

    path: Path
    data: dict

    @property
    def num_frames(self) -> int:
        return int(self.data["pose_6d"].shape[0])

    def __getitem__(self, k: str) -> np.ndarray:
        return self.data[k]


def load_capture(path: Path | str) -> Capture:
    """Read and validate a capture; recovers an unfinished one first.

    Raises :class:`ModelFileError` naming the file and the missing/mis-shaped key.
    """
    path = Path(path)
    if not path.exists() and partial_dir(path).exists():
        recover(path)
    if not path.exists():
        raise ModelFileError(str(path), None, "does not exist")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ModelFileError(str(path), None, f"is not a readable .npz ({e})") from e
    with z:
        if "version" not in z.files:
            raise ModelFileError(str(path), "version", "is missing: not a capture file")
        ver = int(z["version"])
        if ver != CAPTURE_VERSION:
            raise ModelFileError(str(path), "version", f"is {ver}; this build reads capture version {CAPTURE_VERSION}")
        missing = [k for k in REQUIRED_KEYS if k not in z.files]
        if missing:
            raise ModelFileError(str(path), missing[0], f"is missing (all missing: {', '.join(missing)})")
        data = {k: z[k] for k in z.files}
    T = data["pose_6d"].shape[0]
    if data["pose_6d"].shape[1:] != (52, 6):
        raise ModelFileError(str(path), "pose_6d", f"has shape {data['pose_6d'].shape}, expected (T, 52, 6)")
    for k in PER_FRAME_KEYS:
        if data[k].shape[:1] != (T,):
            raise ModelFileError(str(path), k, f"has {data[k].shape[0] if data[k].ndim else 0} frames, pose_6d has {T}")
    if len(data["joint_names"]) != 52:
        raise ModelFileError(str(path), "joint_names", "must list the 52 SMPL-H joints")
    return Capture(path=path, data=data)

