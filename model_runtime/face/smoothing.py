"""Zero-lag (centred) smoothing of the captured face expression, for offline captures.

A causal filter (the capture's One Euro, live) answers a moving mouth one to two frames late:
on the SadTalker AOC clip, r(jawOpen, lip gap) is 0.93 for the tracker's own output and 0.82
after the One Euro, whose best shift is one frame (docs/face.md, "Mouth").  Offline, every frame's
successors are known, so the expression is smoothed with a centred Gaussian instead:
:func:`centred_gaussian` (arrays) and :class:`CentredExpressionSmoother` (streaming records, as
the capture post-processing hands them over, in file order).

The standard deviation is :data:`EXPRESSION_SIGMA_S` (the image-aligned fit's centred smoothing of
fast body parts, ``AlignConfig.smoothing_s``), scaled by the capture's smoothing strength: the
One Euro ``min_cutoff`` of the default options over the capture's (a stronger smoothing, lower
cut-off, gives a wider Gaussian).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Final

import numpy as np

from ..core.streams import HeldStream

#: std (s) of the centred Gaussian at the default smoothing strength: the image-aligned fit's
#: std for moving body parts (capture/align.py ``AlignConfig.smoothing_s``)
EXPRESSION_SIGMA_S: Final[float] = 0.04
#: the window reaches this many standard deviations on each side
WINDOW_SIGMAS: Final[float] = 2.5


def expression_sigma_s(min_cutoff: float, default_min_cutoff: float) -> float:
    """Std (s) of the centred expression smoothing for a One Euro ``min_cutoff`` (Hz) of the capture's
    smoothing options: :data:`EXPRESSION_SIGMA_S` at the default cut-off, inversely proportional to it."""
    return EXPRESSION_SIGMA_S * float(default_min_cutoff) / max(float(min_cutoff), 1e-6)


def gaussian_weights(offsets: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Normalised Gaussian weights ``(n,)`` of frame ``offsets (n,)`` (std ``sigma_frames`` frames)."""
    w = np.exp(-0.5 * (np.asarray(offsets, np.float64) / max(sigma_frames, 1e-9)) ** 2)
    return w / w.sum()


def centred_gaussian(x: np.ndarray, ok: np.ndarray, sigma_frames: float, half: int | None = None) -> np.ndarray:
    """Zero-lag smoothing of a series over its runs of usable frames.

    Args:
        x: ``(T, K)`` values per frame.
        ok: ``(T,)`` bool, frames with a value; smoothing never crosses a frame without one.
        sigma_frames: Gaussian std in frames (<= 0: no smoothing).
        half: window half-width in frames (default ``floor(WINDOW_SIGMAS * sigma_frames)``, at least 1).
    Returns:
        ``(T, K)`` float64: each usable frame the Gaussian-weighted mean of the frames ``-m..m`` around it,
        ``m`` = min(``half``, usable frames before it in its run, usable frames after it), so the window is
        symmetric everywhere (a run's first and last frames are kept as they are); other frames unchanged.
    """
    x = np.asarray(x, np.float64)
    ok = np.asarray(ok, bool)
    out = x.copy()
    if sigma_frames <= 0 or len(x) == 0:
        return out
    h = max(1, math.floor(WINDOW_SIGMAS * sigma_frames + 1e-9)) if half is None else int(half)
    T = len(x)
    # usable frames before / after each frame within its run (vectorised run lengths)
    idx = np.arange(T)
    starts = np.maximum.accumulate(np.where(~ok, idx + 1, 0))             # first frame of the run
    ends = (T - 1) - np.maximum.accumulate(np.where(~ok[::-1], idx + 1, 0))[::-1]  # last frame of the run
    m = np.minimum(h, np.minimum(idx - starts, ends - idx))
    m[~ok] = 0
    xp = np.pad(x, ((h, h), (0, 0)))
    acc = np.zeros_like(x)
    wsum = np.zeros(T)
    for o in range(-h, h + 1):
        w = np.where(np.abs(o) <= m, math.exp(-0.5 * (o / sigma_frames) ** 2), 0.0)      # (T,)
        acc += w[:, None] * xp[h + o:h + o + T]
        wsum += w
    sel = ok & (wsum > 0)
    out[sel] = acc[sel] / wsum[sel, None]
    return out


class CentredExpressionSmoother(HeldStream):
    """Streaming :func:`centred_gaussian` of ``rec.expression`` over records in file order, on their times.

    Records need ``index`` (frame number), ``time`` (seconds), ``face_ok`` (a tracked face) and
    ``expression (K,)``.  :meth:`push` holds each record until a later one is at least
    ``WINDOW_SIGMAS * sigma_s`` seconds after it and returns the records whose window is complete,
    expressions smoothed with Gaussian weights of the time differences (from the unsmoothed values of
    the neighbours, the same number on each side, consecutive frames with a face only); :meth:`flush`
    releases the rest at the clip's end.  ``sigma_s <= 0`` passes records through.  At a constant frame
    rate this is :func:`centred_gaussian` with ``sigma_frames = sigma_s * fps``.
    """

    def __init__(self, sigma_s: float):
        super().__init__()
        self.sigma = float(sigma_s)
        self.reach = WINDOW_SIGMAS * self.sigma
        self._past: deque = deque()                   # (index, time, raw expression) already released

    def _ready(self) -> bool:
        return self.sigma <= 0 or self._held[-1].time - self._held[0].time >= self.reach - 1e-9

    def _release(self):
        r = self._held.popleft()
        if getattr(r, "track_break", False):
            self._past.clear()                      # a new track (another person): no window across it
        if self.sigma <= 0 or not r.face_ok:
            if not r.face_ok:
                self._past.clear()
            return r
        raw = np.asarray(r.expression, np.float64)
        t0 = float(r.time)
        while self._past and t0 - self._past[0][1] > self.reach + 1e-9:
            self._past.popleft()
        before = []
        for k, (idx, t, e) in enumerate(reversed(self._past)):
            if idx != r.index - 1 - k:
                break
            before.append((t, e))
        after = []
        for k, n in enumerate(self._held):
            if (not n.face_ok or n.index != r.index + 1 + k or n.time - t0 > self.reach + 1e-9
                    or getattr(n, "track_break", False)):
                break
            after.append((float(n.time), np.asarray(n.expression, np.float64)))
        m = min(len(before), len(after))             # symmetric: no lag next to a gap or the clip's ends
        self._past.append((r.index, t0, raw))
        if m == 0:
            return r
        pts = [(t0, raw)] + before[:m] + after[:m]
        w = gaussian_weights(np.array([t - t0 for t, _ in pts]), self.sigma)
        r.expression = (w[:, None] * np.stack([e for _, e in pts])).sum(0)
        return r
