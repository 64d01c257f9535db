"""The capture file: a versioned ``.npz`` written incrementally.

While a capture runs, finished frames go to ``OUT.npz.partial/`` in small chunk files (each written to a
temporary name and renamed, so a chunk is either complete or absent) plus ``static.npz`` with the per-clip
values (shape, identity, albedo...) as they are currently estimated.  :meth:`CaptureWriter.close`
consolidates them into ``OUT.npz`` and removes the folder.  If the process dies first, :func:`recover` (or
:func:`load_capture`, which calls it) builds the ``.npz`` from whatever chunks are complete: every finished
frame is kept.

This module needs only numpy, so Blender can read captures without torch.

Nothing is lost and nothing is silently replaced:

* a finished capture is consolidated to a temporary name and renamed, so a failed run never leaves a
  half-written ``OUT.npz``;
* a run that fails (cancel, crash, no person) keeps its frames in ``OUT.npz`` only when no capture is there
  yet, else next to it (``OUT.partial-N.npz``);
* an unfinished ``OUT.npz.partial/`` found when a new run starts is recovered next to the output
  (``OUT.recovered-N.npz``), never deleted;
* a chunk that cannot be read (a damaged disk block) becomes invalid frames of the same count (its file
  name records its first frame and length): every other chunk is kept and the timing is unchanged;
* :func:`load_capture` of a path that has both a finished file and an unfinished folder loads the newer of
  the two and says which (:attr:`Capture.notes`);
* every float value is finite, ``scale`` and ``fps`` are positive, the joint names are the 52 SMPL-H
  joints, visibilities and confidences lie in [0, 1]: a file that breaks this is refused naming the field,
  before anything uses it.

Keys (T frames, K keypoints, E expressions) - see :data:`PER_FRAME_KEYS` and :data:`STATIC_KEYS`.
``pose_6d[t, j]`` is the first two columns of joint j's rotation relative to its parent, column after
column (:mod:`rotations`).  ``transl`` is in metres in the camera frame (x right, y down, z forward).

Version 2 adds what the camera saw (:data:`V2_FRAME_KEYS`; the capture's rules are in
:mod:`model_runtime.capture.visibility`):

* ``keypoint_visibility (T, K)`` float32 in [0, 1], rows of ``keypoints_2d``: 0 = out of frame or not
  detected, else the detector's visibility/confidence, lowered for a point outside the image;
* ``joint_confidence (T, 52)`` float32 in [0, 1]: how much of each SMPL-H joint's rotation is supported by
  what the camera sees; 0 = unseen, the rotation is the held or neutral pose;
* ``joint_source (T, 52)`` uint8, where a joint's rotation comes from: 0 seen (the camera), 1 neutral pose
  (standing legs, relaxed arms and fingers), 2 held (the last seen rotation), 3 gap (a frame without a
  person, ``valid`` False, filled from its neighbours);
* ``foot_contact (T, 2)`` bool [left, right]: the foot is planted on the ground (the capture's
  :mod:`model_runtime.capture.feet`: ankle low above the ground plane and the foot still in the image, with
  hysteresis; only where the foot's keypoints are seen, so never on a waist-up clip).  The capture locks a
  planted foot in place.  All False: no contact (or, in files made before the estimate existed, not estimated).

Per frame, optional (older version-2 files load with the default): ``track_break (T,)`` bool, a new
track starts here (another person or a cut, :class:`model_runtime.capture.tracking.PersonSwitchDetector`):
nothing temporal links it to the frames before; a gap before it holds the last frame.  All False: one track.

Per clip, optional (older files load with the default):

* ``ground_plane (4,)`` float32 ``(n, d)`` in camera space: ``n . X + d`` is the height (m) above the
  ground, ``|n| = 1``, ``n`` pointing up (towards ``-y``); estimated from the planted feet.  All zeros: no
  plane (the feet were never seen planted).
* ``iris_colour (3,)`` float32 linear RGB in [0, 1]: the person's iris, an albedo like the face's
  (:mod:`model_runtime.face.eye_colour`).  All zeros: not seen (the add-on's default brown).
* ``face_albedo_detail (N, 3)`` float32 linear RGB in [-1, 1], one row per face-model vertex: the colour
  seen in the video over the 3DMM albedo of ``face_albedo`` (brows, lash lines, lips;
  :mod:`model_runtime.face.albedo_detail`).  ``(0, 3)``: none.

A version-1 file loads with the documented defaults (:func:`frame_defaults`): visibility 1 where the
keypoint's confidence is above 0 else 0, joint confidence 1, source seen, no contact, no track break.  So
does a frame appended without these keys (:meth:`CaptureWriter.append`).
"""
from __future__ import annotations

import bisect
import logging
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Mapping

import numpy as np

from .errors import ModelFileError, OutputError
from .safe_npz import load_npz, npz_members
from .skeleton import JOINT_NAMES

log = logging.getLogger(__name__)

CAPTURE_VERSION: Final[int] = 2
#: versions :func:`load_capture` reads (older ones get :func:`frame_defaults`)
READABLE_VERSIONS: Final[tuple[int, ...]] = (1, 2)

#: per-frame arrays of version 2 (what the camera saw, see the module docstring)
V2_FRAME_KEYS: Final[dict[str, tuple[tuple, str]]] = {
    "keypoint_visibility": (("K",), "float32"),
    "joint_confidence": ((52,), "float32"),
    "joint_source": ((52,), "uint8"),
    "foot_contact": ((2,), "bool"),
}
#: per-frame arrays added within version 2, which older files lack (loaded with :func:`frame_defaults`)
OPTIONAL_FRAME_KEYS: Final[dict[str, tuple[tuple, str]]] = {"track_break": ((), "bool")}
#: ``joint_source`` values: seen, neutral pose, held, gap (frame without a person)
JOINT_SOURCES: Final[tuple[str, ...]] = ("seen", "neutral", "held", "gap")

#: per-frame arrays: name -> (shape after T with symbolic dims, dtype)
PER_FRAME_KEYS: Final[dict[str, tuple[tuple, str]]] = {
    "pose_6d": ((52, 6), "float32"),
    "transl": ((3,), "float32"),
    "valid": ((), "bool"),
    "keypoints_2d": (("K", 3), "float32"),
    "keypoints_3d": (("K", 3), "float32"),
    "face_expression": (("E",), "float32"),
    "face_sh": ((27,), "float32"),
    **V2_FRAME_KEYS,
    **OPTIONAL_FRAME_KEYS,
}
#: per-clip values
STATIC_KEYS: Final[tuple[str, ...]] = (
    "version", "fps", "image_size", "camera_K", "joint_names", "betas", "scale",
    "keypoint_names", "face_identity", "face_albedo", "expression_names",
    "body_model", "face_model", "camera_source", "ground_plane", "iris_colour", "face_albedo_detail",
)
#: static keys that older files lack, and the value they load with.  ``camera_source``: where
#: ``camera_K`` comes from: "calibration" (a file), "fov" (given), "metadata" (EXIF / QuickTime focal of
#: the source file), "scene" (the background's vanishing points), "estimated" (per clip, from the body), "default";
#: ``ground_plane`` zeros: no plane
STATIC_DEFAULTS: Final[dict[str, object]] = {"camera_source": "default", "ground_plane": (0.0, 0.0, 0.0, 0.0),
                                             "iris_colour": (0.0, 0.0, 0.0),
                                             "face_albedo_detail": np.zeros((0, 3), np.float32)}
REQUIRED_KEYS: Final[tuple[str, ...]] = STATIC_KEYS + tuple(PER_FRAME_KEYS)
#: per-frame keys a version-1 file lacks, and what a version-1 file must hold
NEWER_FRAME_KEYS: Final[dict[str, tuple[tuple, str]]] = {**V2_FRAME_KEYS, **OPTIONAL_FRAME_KEYS}
REQUIRED_KEYS_V1: Final[tuple[str, ...]] = tuple(k for k in REQUIRED_KEYS if k not in NEWER_FRAME_KEYS)


def frame_defaults(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The :data:`NEWER_FRAME_KEYS` that ``arrays`` lacks, from its ``keypoints_2d`` (``(..., K, 3)``: one frame
    or ``T`` frames): visibility ``confidence > 0``, joint confidence 1, source seen (0), no foot contact, no
    track break.  What a version-1 file and a frame appended without them get."""
    lead = np.shape(arrays["keypoints_2d"])[:-2]
    out = {
        "keypoint_visibility": lambda: (np.asarray(arrays["keypoints_2d"])[..., 2] > 0).astype(np.float32),
        "joint_confidence": lambda: np.ones((*lead, 52), np.float32),
        "joint_source": lambda: np.zeros((*lead, 52), np.uint8),
        "foot_contact": lambda: np.zeros((*lead, 2), bool),
        "track_break": lambda: np.zeros(lead, bool),
    }
    return {k: make() for k, make in out.items() if k not in arrays}


def partial_dir(path: Path | str) -> Path:
    return Path(str(path) + ".partial")


def sibling(path: Path | str, tag: str) -> Path:
    """A free name next to ``path``: ``STEM.TAG-N.npz`` with the smallest N >= 1."""
    path = Path(path)
    for n in range(1, 100000):
        cand = path.with_name(f"{path.stem}.{tag}-{n}{path.suffix}")
        if not cand.exists() and not partial_dir(cand).exists():
            return cand
    raise OutputError(f"{path}: no free name for the {tag} capture next to it")


def check_writable_folder(folder: Path, path: Path | str) -> None:
    """Raise :class:`OutputError` naming ``path`` unless a file can be created in ``folder``.

    The real test, a probe file (``os.access`` is wrong for root and for read-only mounts)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".fullbody-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{path}: cannot write in the output folder {folder} ({e.strerror or e})") from None


def check_output(path: Path | str, overwrite: bool = False, suffix: str = ".npz",
                 exists_note: str = " (a failed run never replaces it)") -> Path:
    """Check an output file path before any work starts; returns it as a Path.

    Raises :class:`OutputError` (one line naming the path) when it does not end in
    ``suffix`` (a capture: ``.npz``), is a folder, its folder is missing or not writable, or
    it exists and ``overwrite`` is false (the message then ends with ``exists_note``)."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise OutputError(f"{path}: the output must be a {suffix} file")
    if path.is_dir():
        raise OutputError(f"{path}: the output is a folder; give a file name ending in {suffix}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"{path}: the output folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"{path}: {parent} is not a folder")
    check_writable_folder(parent, path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: the output exists; choose another name or pass --overwrite{exists_note}")
    return path


def _atomic_savez(target: Path, arrays: Mapping[str, np.ndarray]) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


_CHUNK = re.compile(r"chunk_(\d+)_(\d+)\.npz$")


class CaptureWriter:
    """Append frames; flush every ``chunk_frames``; ``close()`` writes the final ``.npz``.

    Usage::

        w = CaptureWriter(out, static={...})
        w.append(pose_6d=..., transl=..., valid=..., ...)   # once per frame (V2_FRAME_KEYS may be left
                                                             # out: frame_defaults)
        w.update_static(betas=...)                           # as soon as a per-clip value is known
        w.rewrite({row: frame})                              # a finished frame decided again (feet lock)
        w.close()                                            # or w.abort() keeps what is finished

    A hard kill loses at most the frames of the unflushed chunk (``chunk_frames - 1``).  :meth:`rewrite`
    replaces written chunks whole under their own name (temporary file, then rename), so a kill during it
    leaves each chunk either as it was or as rewritten.  Values must be finite (``ValueError`` names the key).
    """

    #: written chunks kept in memory for :meth:`rewrite` (older ones are read back from disk)
    CACHED_CHUNKS: Final[int] = 64

    def __init__(self, path: Path | str, static: Mapping[str, object], chunk_frames: int = 8):
        self.path = Path(path)
        self.dir = partial_dir(self.path)
        self.recovered: Path | None = None
        if self.dir.exists():   # an earlier run died here: keep its frames next to the output
            self.recovered = _recover_aside(self.path)
        self.dir.mkdir(parents=True)
        self.chunk_frames = int(chunk_frames)
        self._static: dict[str, np.ndarray] = {"version": np.int32(CAPTURE_VERSION)}
        self._buf: dict[str, list] = {k: [] for k in PER_FRAME_KEYS}
        self.frames_written = 0
        self._chunk_starts: list[int] = []                       # first frame of each written chunk
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()   # recent chunks by start
        self.update_static(**static)

    @property
    def chunks_written(self) -> int:
        """Chunks of frames written to disk so far."""
        return len(self._chunk_starts)

    def update_static(self, **values) -> None:
        for k, v in values.items():
            if k not in STATIC_KEYS:
                raise KeyError(f"unknown static capture key {k!r}")
            a = np.asarray(v)
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"{self.path}: static value '{k}' is not finite")
            self._static[k] = a
        _atomic_savez(self.dir / "static.npz", self._static)

    def _checked(self, frame: dict, row: int) -> dict[str, np.ndarray]:
        """One frame's arrays in the file's dtypes (missing V2 keys defaulted); errors name ``row``."""
        frame = dict(frame)
        frame.update(frame_defaults(frame) if "keypoints_2d" in frame else {})
        missing = set(PER_FRAME_KEYS) - set(frame)
        if missing:
            raise KeyError(f"frame lacks {sorted(missing)}")
        out = {}
        for k, (_, dt) in PER_FRAME_KEYS.items():
            a = np.asarray(frame[k], dtype=dt)
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"{self.path}: frame {row} '{k}' is not finite")
            out[k] = a
        return out

    @property
    def frames_appended(self) -> int:
        """Frames appended so far (written in chunks or still buffered)."""
        return self.frames_written + len(self._buf["valid"])

    def append(self, **frame) -> None:
        for k, a in self._checked(frame, self.frames_appended).items():
            self._buf[k].append(a)
        if len(self._buf["valid"]) >= self.chunk_frames:
            self.flush()

    def rewrite(self, rows: Mapping[int, Mapping[str, np.ndarray]]) -> None:
        """Replace frames already appended: ``rows`` maps a frame number (``0 <= row <
        frames_appended``) to the same keys as :meth:`append`.  Buffered frames are replaced in
        memory; each written chunk holding a row is written again once, whole, to a temporary name
        and renamed over itself (a kill leaves it as it was or as rewritten).  A chunk that can no
        longer be read raises :class:`ModelFileError` naming it."""
        by_chunk: dict[int, dict[int, dict[str, np.ndarray]]] = {}
        for row, frame in sorted(rows.items()):
            if not 0 <= row < self.frames_appended:
                raise IndexError(f"{self.path}: cannot rewrite frame {row}: {self.frames_appended} frames appended")
            checked = self._checked(frame, row)
            if row >= self.frames_written:
                for k, a in checked.items():
                    self._buf[k][row - self.frames_written] = a
                continue
            start = self._chunk_starts[bisect.bisect_right(self._chunk_starts, row) - 1]
            by_chunk.setdefault(start, {})[row - start] = checked
        for start, frames in by_chunk.items():
            arrays = self._cache.pop(start, None)
            n = self._chunk_len(start)
            name = self._chunk_path(start, n)
            if arrays is None:
                arrays = load_npz(name, list(PER_FRAME_KEYS))
            arrays = {k: v.copy() for k, v in arrays.items()}
            for i, checked in frames.items():
                for k, a in checked.items():
                    arrays[k][i] = a
            _atomic_savez(name, arrays)
            self._remember(start, arrays)

    def _chunk_path(self, start: int, n: int) -> Path:
        """The chunk file of frames ``start .. start + n - 1`` (the names :data:`_CHUNK` reads back)."""
        return self.dir / f"chunk_{start:08d}_{n:05d}.npz"

    def _chunk_len(self, start: int) -> int:
        i = bisect.bisect_left(self._chunk_starts, start)
        end = self._chunk_starts[i + 1] if i + 1 < len(self._chunk_starts) else self.frames_written
        return end - start

    def _remember(self, start: int, arrays: dict[str, np.ndarray]) -> None:
        self._cache[start] = arrays
        while len(self._cache) > self.CACHED_CHUNKS:
            self._cache.popitem(last=False)

    def flush(self) -> None:
        n = len(self._buf["valid"])
        if not n:
            return
        arrays = {k: np.stack(v) for k, v in self._buf.items()}
        _atomic_savez(self._chunk_path(self.frames_written, n), arrays)
        self._chunk_starts.append(self.frames_written)
        self._remember(self.frames_written, arrays)
        self.frames_written += n
        self._buf = {k: [] for k in PER_FRAME_KEYS}

    def close(self) -> Path:
        """Flush and consolidate into ``path`` (temporary name, then rename); returns it."""
        self.flush()
        return recover(self.path)

    def abort(self) -> Path | None:
        """Keep what is finished (cancel/crash/no person): in ``path`` if nothing is there yet,
        else in a free sibling name (a failed run never replaces a capture); None if no frame."""
        self.flush()
        if self.frames_written == 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            return None
        target = self.path if not self.path.exists() else sibling(self.path, "partial")
        return recover(self.path, target)


def _recover_aside(path: Path) -> Path | None:
    """Recover ``path.partial/`` next to ``path``; a folder with nothing to recover is renamed."""
    d = partial_dir(path)
    target = sibling(path, "recovered")
    try:
        recover(path, target)
        log.warning("%s: an unfinished earlier capture was recovered into %s", d, target)
        return target
    except ModelFileError as e:
        stale = d.with_name(f"{d.name}.stale-{target.stem.rsplit('-', 1)[-1]}")
        d.rename(stale)
        log.warning("%s: could not be recovered (%s); kept as %s", d, e, stale)
        return None


def _hold_fill(n: int, prev: Mapping[str, np.ndarray]) -> dict:
    """``n`` invalid frames standing in for a chunk that could not be read: ``prev``'s last frame held."""
    out = {k: np.repeat(v[-1:], n, axis=0) for k, v in prev.items()}
    out["valid"] = np.zeros(n, bool)
    out.update({k: np.zeros(n, bool) for k in OPTIONAL_FRAME_KEYS if k in out})
    return out


def recover(path: Path | str, target: Path | str | None = None) -> Path:
    """Consolidate ``path.partial/`` into ``target`` (default ``path``), chunk by chunk, then remove it.

    A chunk that cannot be read is replaced by invalid frames of its length (logged)."""
    path = Path(path)
    target = path if target is None else Path(target)
    d = partial_dir(path)
    static_f = d / "static.npz"
    if not static_f.exists():
        raise ModelFileError(str(d), "static.npz", "is missing: nothing to recover")
    out = load_npz(static_f)   # ModelFileError on any damage: the caller keeps the folder
    chunks = sorted((int(m.group(1)), int(m.group(2)), c) for c in d.glob("chunk_*.npz")
                    if (m := _CHUNK.match(c.name)))
    parts: dict[str, list] = {k: [] for k in PER_FRAME_KEYS}
    damaged: list[str] = []
    prev: dict | None = None
    expect = 0
    for start, n, c in chunks:
        if start != expect:   # a chunk file is gone altogether: same treatment
            damaged.append(f"frames {expect}..{start - 1} (no chunk)")
            if prev is not None:   # (before the first readable chunk there is nothing to hold)
                for k, v in _hold_fill(start - expect, prev).items():
                    parts[k].append(v)
        try:
            loaded = load_npz(c, [k for k in PER_FRAME_KEYS if k not in NEWER_FRAME_KEYS], optional=NEWER_FRAME_KEYS)
            loaded.update(frame_defaults(loaded))     # a chunk of a version-1 writer
            if any(len(v) != n for v in loaded.values()):
                raise ValueError(f"holds {len(loaded['valid'])} frames, its name says {n}")
        except Exception as e:  # noqa: BLE001 - a chunk damaged on disk: skip only it
            damaged.append(f"{c.name} ({e})")
            if prev is None:
                continue
            loaded = _hold_fill(n, prev)
        for k, v in loaded.items():
            parts[k].append(v)
        prev, expect = loaded, start + n
    if damaged:
        log.warning("%s: %d damaged or missing chunk(s) became invalid frames: %s", d, len(damaged),
                    "; ".join(damaged))
    for k, (shape, dt) in PER_FRAME_KEYS.items():
        if parts[k]:
            out[k] = np.concatenate(parts[k])
        else:
            concrete = tuple(0 if isinstance(s, str) else s for s in shape)
            out[k] = np.zeros((0, *concrete), dtype=dt)
    _atomic_savez(target, out)
    shutil.rmtree(d, ignore_errors=True)
    return target


@dataclass(frozen=True)
class Capture:
    """A loaded capture; ``data`` maps every key of :data:`REQUIRED_KEYS` to an array.  ``notes``: what
    :func:`load_capture` decided (e.g. which of a finished file and an unfinished folder it loaded)."""

    path: Path
    data: dict
    notes: tuple[str, ...] = ()

    @property
    def num_frames(self) -> int:
        return int(self.data["pose_6d"].shape[0])

    def __getitem__(self, k: str) -> np.ndarray:
        return self.data[k]


def _newest_mtime(d: Path) -> float:
    return max((f.stat().st_mtime for f in d.iterdir()), default=d.stat().st_mtime)


def _resolve(path: Path) -> tuple[Path, tuple[str, ...]]:
    """Which file :func:`load_capture` reads for ``path``, recovering an unfinished capture."""
    d = partial_dir(path)
    if not d.exists():
        return path, ()
    if not path.exists():
        recover(path)
        return path, (f"{path}: recovered from the unfinished capture {d}",)
    if _newest_mtime(d) > path.stat().st_mtime:
        target = recover(path, sibling(path, "recovered"))
        return target, (f"{path}: loaded the newer unfinished capture {d} (recovered into {target}); "
                        f"the older finished capture {path} is left as it was",)
    return path, (f"{path}: loaded this finished capture; an older unfinished one is left in {d}",)


def _check_finite(path: Path, data: dict) -> None:
    for k, v in data.items():
        if v.dtype.kind in "fc" and not np.isfinite(v).all():
            bad = np.argwhere(~np.isfinite(v))[0]
            where = f" (frame {bad[0]})" if k in PER_FRAME_KEYS and len(bad) else ""
            raise ModelFileError(str(path), k, f"has a non-finite value{where}")


def validate(path: Path | str, data: dict) -> None:
    """Check every field of a capture (shapes, finiteness, positive scale/fps, joint names);
    raises :class:`ModelFileError` naming ``path`` and the field."""
    path = Path(path)
    for k in data:
        if data[k].dtype.hasobject:
            raise ModelFileError(str(path), k, "holds Python objects")
    _check_finite(path, data)
    T = data["pose_6d"].shape[0] if data["pose_6d"].ndim else -1
    if data["pose_6d"].shape[1:] != (52, 6) or data["pose_6d"].ndim != 3:
        raise ModelFileError(str(path), "pose_6d", f"has shape {data['pose_6d'].shape}, expected (T, 52, 6)")
    for k, (shape, _) in PER_FRAME_KEYS.items():
        v = data[k]
        if v.shape[:1] != (T,):
            raise ModelFileError(str(path), k, f"has {v.shape[0] if v.ndim else 0} frames, pose_6d has {T}")
        if v.ndim != 1 + len(shape) or any(not isinstance(s, str) and s != a for s, a in zip(shape, v.shape[1:])):
            want = "(T, " + ", ".join(str(s) for s in shape) + ")" if shape else "(T,)"
            raise ModelFileError(str(path), k, f"has shape {v.shape}, expected {want}")
    if data["valid"].dtype != bool:
        raise ModelFileError(str(path), "valid", f"has dtype {data['valid'].dtype}, expected bool")
    names = [str(n) for n in np.atleast_1d(data["joint_names"])]
    if names != list(JOINT_NAMES):
        bad = next((i for i, (a, b) in enumerate(zip(names, JOINT_NAMES)) if a != b), min(len(names), 52))
        raise ModelFileError(str(path), "joint_names", f"must list the 52 SMPL-H joints in order "
                             f"(entry {bad}: {names[bad] if bad < len(names) else 'missing'!r})")
    for k in ("fps", "scale"):
        v = data[k]
        if v.size != 1 or v.dtype.kind not in "fiu" or not float(v.reshape(-1)[0]) > 0:
            raise ModelFileError(str(path), k, f"must be one positive number, got {v.reshape(-1)[:3].tolist()}")
    if data["camera_K"].shape != (3, 3):
        raise ModelFileError(str(path), "camera_K", f"has shape {data['camera_K'].shape}, expected (3, 3)")
    size = data["image_size"]
    if size.shape != (2,) or size.dtype.kind not in "iu" or (size <= 0).any():
        raise ModelFileError(str(path), "image_size", f"must be (width, height) > 0, got {size.tolist()}")
    if data["betas"].ndim != 1 or data["betas"].dtype.kind != "f":
        raise ModelFileError(str(path), "betas", f"has shape {data['betas'].shape}, expected (B,)")
    E = len(np.atleast_1d(data["expression_names"])) if data["expression_names"].size else 0
    if data["face_expression"].shape[1] != E:
        raise ModelFileError(str(path), "face_expression", f"has {data['face_expression'].shape[1]} "
                             f"coefficients, expression_names lists {E}")
    K = len(np.atleast_1d(data["keypoint_names"])) if data["keypoint_names"].size else 0
    for k in ("keypoints_2d", "keypoints_3d", "keypoint_visibility"):
        if data[k].shape[1] != K:
            raise ModelFileError(str(path), k, f"has {data[k].shape[1]} keypoints, keypoint_names lists {K}")
    _check_v2(path, data)


def _check_v2(path: Path, data: dict) -> None:
    """Kinds and ranges of the :data:`V2_FRAME_KEYS` (their shapes are checked with the others)."""
    for k in ("keypoint_visibility", "joint_confidence"):
        v = data[k]
        if v.dtype.kind not in "bfiu":
            raise ModelFileError(str(path), k, f"has dtype {v.dtype}, expected float32 in [0, 1]")
        out = (v < 0) | (v > 1)
        if out.any():
            t, *rest = np.argwhere(out)[0]
            raise ModelFileError(str(path), k, f"must lie in [0, 1], got {float(v[(t, *rest)])} (frame {t})")
    src = data["joint_source"]
    if src.dtype.kind not in "iu" or ((src < 0) | (src >= len(JOINT_SOURCES))).any():
        bad = "" if src.dtype.kind not in "iu" else f", got {int(src[(src < 0) | (src >= len(JOINT_SOURCES))][0])}"
        raise ModelFileError(str(path), "joint_source", f"must hold integer codes 0..{len(JOINT_SOURCES) - 1} "
                             f"({', '.join(JOINT_SOURCES)}){bad}")
    for k in ("foot_contact", *OPTIONAL_FRAME_KEYS):
        if k in data and data[k].dtype != bool:
            raise ModelFileError(str(path), k, f"has dtype {data[k].dtype}, expected bool")
    _check_ground_plane(path, data["ground_plane"])
    ic = data["iris_colour"]
    if ic.shape != (3,) or ic.dtype.kind not in "fiu" or not np.isfinite(ic).all() or ((ic < 0) | (ic > 1)).any():
        raise ModelFileError(str(path), "iris_colour", f"must be 3 linear RGB values in [0, 1], got "
                             f"{np.asarray(ic).tolist()} ({ic.dtype})")
    det = data["face_albedo_detail"]
    if det.ndim != 2 or det.shape[1] != 3 or det.dtype.kind != "f" or (det.size and np.abs(det).max() > 1.0):
        raise ModelFileError(str(path), "face_albedo_detail", f"has shape {det.shape} and dtype {det.dtype}, expected "
                             "(N, 3) floats within [-1, 1] (one row per face vertex) or (0, 3)")


def _check_ground_plane(path: Path, plane: np.ndarray) -> None:
    """``ground_plane``: 4 finite numbers, all zero (no plane) or a unit normal and an offset."""
    if plane.shape != (4,) or plane.dtype.kind not in "fiu":
        raise ModelFileError(str(path), "ground_plane", f"has shape {plane.shape} and dtype {plane.dtype}, "
                             "expected 4 numbers (normal, offset)")
    p = plane.astype(np.float64)
    if not np.isfinite(p).all():
        raise ModelFileError(str(path), "ground_plane", f"must be finite, got {p.tolist()}")
    n = float(np.linalg.norm(p[:3]))
    if (p != 0).any() and abs(n - 1.0) > 1e-3:
        raise ModelFileError(str(path), "ground_plane", f"normal must have length 1 (or the plane be all "
                             f"zeros: none), got length {n:.4g}")


def load_capture(path: Path | str) -> Capture:
    """Read and validate a capture (:func:`validate`); recovers an unfinished one first.

    When both ``path`` and ``path.partial/`` exist, the newer is loaded (the partial is
    recovered next to ``path``) and :attr:`Capture.notes` says which.  A version-1 file gets the
    :data:`V2_FRAME_KEYS` of :func:`frame_defaults`; ``keypoint_visibility`` and
    ``joint_confidence`` are returned as float32, ``joint_source`` as uint8.  Raises
    :class:`ModelFileError` naming the file and the missing/mis-shaped/non-finite key.
    """
    path, notes = _resolve(Path(path))
    if path.is_dir():
        raise ModelFileError(str(path), None, "is a folder, not a capture file")
    members = npz_members(path)   # headers only: a missing/corrupt/hostile file fails here, naming it
    if "version" not in members:
        raise ModelFileError(str(path), "version", "is missing: not a capture file")
    missing = [k for k in REQUIRED_KEYS_V1 if k not in members and k not in STATIC_DEFAULTS]
    if missing:
        raise ModelFileError(str(path), missing[0], f"is missing (all missing: {', '.join(missing)})")
    data = load_npz(path, what="capture file (.npz)")
    for k, v in STATIC_DEFAULTS.items():
        data.setdefault(k, np.asarray(v, np.float32) if isinstance(v, tuple) else np.asarray(v))
    ver = int(data["version"]) if data["version"].size == 1 and data["version"].dtype.kind in "iu" else -1
    if ver not in READABLE_VERSIONS:
        raise ModelFileError(str(path), "version", f"is {ver}; this build reads capture versions "
                                                   f"{', '.join(map(str, READABLE_VERSIONS))}")
    if ver >= 2:
        missing = [k for k in V2_FRAME_KEYS if k not in members]
        if missing:
            raise ModelFileError(str(path), missing[0], f"is missing (all missing: {', '.join(missing)})")
    if data["keypoints_2d"].ndim == 3:       # else validate names the mis-shaped keypoints_2d
        data.update(frame_defaults(data))    # version 1: the V2 keys; any version: the optional ones
    validate(path, data)
    for k, (_, dt) in NEWER_FRAME_KEYS.items():
        data[k] = data[k].astype(dt, copy=False)
    for n in notes:
        log.warning("%s", n)
    return Capture(path=path, data=data, notes=notes)
