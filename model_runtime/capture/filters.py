"""Temporal filters of the capture: One Euro smoothing, quaternion continuity, gap filling.

* :class:`OneEuroFilter` (Casiez et al., CHI 2012) on arrays of any shape,
  vectorised; optionally one cutoff per vector (``group_last_axis``) so a
  quaternion or a 3D point is smoothed as a whole.
* :class:`RotationFilter`: rotations as WXYZ quaternions kept in the same
  hemisphere as the previous frame's (quaternion continuity), smoothed with a
  One Euro filter and renormalised.  Capture files store 6D rotations, which
  have no sign ambiguity; quaternions matter here and on the Blender side.
* :class:`GapFiller`: frames without a person (``valid == False``) are filled
  by *holding* the last valid values or by *interpolating* (slerp for
  rotations, lerp otherwise) between the valid frames around the gap.  It is
  streaming: a gap is buffered until the next valid frame arrives (at most
  ``max_gap`` frames; longer gaps are held).
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np

from ..core import rotations

from ..core.options import FILL_MODES, SmoothingConfig  # noqa: F401 - re-exported: the schema lives in options

FillMode = Literal["hold", "interpolate"]


def _alpha(cutoff, dt: float):
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One Euro filter over arrays of a fixed shape ``S`` (one filter per element).

    ``group_last_axis=True`` uses one speed (the norm over the last axis) per
    vector, so e.g. ``(52, 4)`` quaternions get 52 cutoffs.
    """

    def __init__(self, config: SmoothingConfig = SmoothingConfig(), group_last_axis: bool = False):
        self.config = config
        self.group = group_last_axis
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter the sample ``x (S)`` taken at time ``t`` seconds; returns ``(S)`` float64."""
        x = np.asarray(x, np.float64)
        if not self.config.enabled:
            return x
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        c = self.config
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(c.d_cutoff, dt) * (dx - self._dx)
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) if self.group else np.abs(self._dx)
        a = _alpha(c.min_cutoff + c.beta * speed, dt)
        self._x = self._x + a * (x - self._x)
        self._t = t
        return self._x.copy()


def align_hemisphere(q: np.ndarray, ref: np.ndarray | None) -> np.ndarray:
    """Flip quaternions ``q (..., 4)`` whose dot with ``ref (..., 4)`` is negative."""
    if ref is None:
        return q
    s = np.where((q * ref).sum(-1, keepdims=True) < 0, -1.0, 1.0)
    return q * s


class RotationFilter:
    """Smooths rotations ``(J, 3, 3)`` frame by frame through continuous quaternions."""

    def __init__(self, config: SmoothingConfig = SmoothingConfig()):
        self._f = OneEuroFilter(config, group_last_axis=True)
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._f.reset()
        self._prev = None

    def __call__(self, rot: np.ndarray, t: float) -> np.ndarray:
        """``rot (J, 3, 3)`` at ``t`` s -> smoothed ``(J, 3, 3)``."""
        return rotations.quat_wxyz_to_matrix(self.quaternions(rot, t))

    def quaternions(self, rot: np.ndarray, t: float) -> np.ndarray:
        """``rot (J, 3, 3)`` at ``t`` s -> smoothed unit quaternions ``(J, 4)`` WXYZ, each in the
        hemisphere of the previous frame's (continuous over time)."""
        return self.filter_quaternions(rotations.matrix_to_quat_wxyz(np.asarray(rot, np.float64)), t)

    def filter_quaternions(self, q: np.ndarray, t: float) -> np.ndarray:
        """As :meth:`quaternions`, for unit quaternions ``q (J, 4)`` WXYZ (either sign)."""
        q = align_hemisphere(np.asarray(q, np.float64), self._prev)
        qf = self._f(q, t)
        qf = qf / np.maximum(np.linalg.norm(qf, axis=-1, keepdims=True), 1e-12)
        self._prev = qf
        return qf


def slerp(q0: np.ndarray, q1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spherical interpolation of unit quaternions ``q0, q1 (..., 4)`` with weights
    ``w`` broadcastable to ``(...)`` (0 -> q0, 1 -> q1); shortest path."""
    q1 = align_hemisphere(q1, q0)
    w = np.asarray(w, np.float64)[..., None]
    d = np.clip((q0 * q1).sum(-1, keepdims=True), -1.0, 1.0)
    theta = np.arccos(d)
    s = np.sin(theta)
    near = s < 1e-6
    s_safe = np.where(near, 1.0, s)
    a = np.where(near, 1.0 - w, np.sin((1.0 - w) * theta) / s_safe)
    b = np.where(near, w, np.sin(w * theta) / s_safe)
    out = a * q0 + b * q1
    return out / np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)


class GapFiller:
    """Fills frames without a person (or without a face fit), streaming.

    Records are dicts, or objects with these names as attributes (:class:`records.FrameRecord`),
    with a bool flag (``flag``, default ``"valid"``), a float ``"time"`` and arrays.  Keys in ``quat_keys`` hold WXYZ quaternions ``(..., 4)`` (slerped); keys in
    ``linear_keys`` are lerped; other keys pass through untouched (e.g. the raw
    keypoints, which stay as detected).  ``push`` returns the records that are
    ready, in order; ``flush`` returns the rest (a trailing gap is held).

    Records before the first valid frame are filled with the first valid one
    (when it arrives within ``max_gap`` frames); records of a gap longer than
    ``max_gap`` hold the last valid values (or keep their own if none yet).
    ``lookahead=False`` (live): never wait for a future frame; gaps are held at
    once and records before the first valid one pass unchanged.  A gap that ends at a record
    starting a new track (``track_break``: another person, a cut) holds the last valid values
    instead of interpolating towards the other person.
    """

    def __init__(self, mode: FillMode = "interpolate", quat_keys: Sequence[str] = (),
                 linear_keys: Sequence[str] = (), max_gap: int = 60, flag: str = "valid",
                 lookahead: bool = True):
        if mode not in FILL_MODES:
            raise ValueError(f"fill mode must be one of {FILL_MODES}, got {mode!r}")
        self.mode = mode if lookahead else "hold"
        self.flag, self.lookahead = flag, lookahead
        self.quat_keys, self.linear_keys = tuple(quat_keys), tuple(linear_keys)
        self.max_gap = int(max_gap)
        self._last = None           # the last valid record
        self._gap: list = []

    @property
    def pending(self) -> int:
        """Number of records held back (waiting for the end of a gap)."""
        return len(self._gap)

    def _fill(self, rec, src) -> None:
        for k in self.quat_keys + self.linear_keys:
            _set(rec, k, np.array(_get(src, k), copy=True))

    def push(self, rec) -> list:
        if not _get(rec, self.flag):
            self._gap.append(rec)
            if not self.lookahead or len(self._gap) > self.max_gap:
                return self._release_held()
            return []
        out = self._gap
        if out:
            if self._last is None or self.mode == "hold" or _breaks(rec):
                for g in out:      # a gap before a new track (another person) holds the last one
                    self._fill(g, self._last if self._last is not None else rec)
            else:
                self._interpolate(out, self._last, rec)
        self._gap = []
        self._last = rec
        return out + [rec]

    def _release_held(self) -> list:
        out, self._gap = self._gap, []
        if self._last is not None:
            for g in out:
                self._fill(g, self._last)
        return out

    def flush(self) -> list:
        return self._release_held()

    def fill_gap(self, gap: list, a, b) -> None:
        """Fill the records of one whole gap again (``gap``: in order, none valid) from the valid
        records either side (``a``, ``b``; None: the clip's start or end), as :meth:`push` and
        :meth:`flush` filled them: for when ``a`` or ``b`` changed afterwards (the feet stage
        locks frames after they were handed on).  The blocks of ``max_gap + 1`` records released
        while waiting hold ``a``; the rest is interpolated, or holds ``a`` (else ``b``)."""
        if not gap:
            return
        step = self.max_gap + 1
        held = len(gap) if (not self.lookahead or b is None) else len(gap) // step * step
        if a is not None:
            for g in gap[:held]:
                self._fill(g, a)
        rest = gap[held:]
        if not rest:
            return
        if a is None or self.mode == "hold" or (b is not None and _breaks(b)):
            for g in rest:
                self._fill(g, a if a is not None else b)
        else:
            self._interpolate(rest, a, b)

    def _interpolate(self, gap: list, a, b) -> None:
        t0, t1 = _get(a, "time"), _get(b, "time")
        w = np.array([(_get(g, "time") - t0) / (t1 - t0) if t1 > t0 else 0.5 for g in gap])  # (G,)
        for k in self.quat_keys:
            qa = _get(a, k)
            q = slerp(np.asarray(qa)[None], np.asarray(_get(b, k))[None],
                      w.reshape((-1,) + (1,) * (np.ndim(qa) - 1)))
            for g, qi in zip(gap, q):
                _set(g, k, qi)
        for k in self.linear_keys:
            va, vb = np.asarray(_get(a, k), np.float64), np.asarray(_get(b, k), np.float64)
            ww = w.reshape((-1,) + (1,) * va.ndim)
            v = (1.0 - ww) * va[None] + ww * vb[None]
            for g, vi in zip(gap, v):
                _set(g, k, vi)


def _get(rec, key: str):
    return rec[key] if isinstance(rec, dict) else getattr(rec, key)


def _breaks(rec) -> bool:
    """Whether ``rec`` starts a new track (``track_break``: another person or a cut; absent: no)."""
    return bool(rec.get("track_break", False) if isinstance(rec, dict) else getattr(rec, "track_break", False))


def _set(rec, key: str, value) -> None:
    if isinstance(rec, dict):
        rec[key] = value
    else:
        setattr(rec, key, value)
