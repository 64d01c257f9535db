"""Zero-lag expression smoothing of offline captures (model_runtime/face/smoothing.py)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from model_runtime.capture.filters import OneEuroFilter
from model_runtime.capture.postprocess import expression_smoothing
from model_runtime.core.options import SmoothingConfig
from model_runtime.face.smoothing import (EXPRESSION_SIGMA_S, WINDOW_SIGMAS, CentredExpressionSmoother,
                                          centred_gaussian, expression_sigma_s)


def _records(x: np.ndarray, ok: np.ndarray, fps: float):
    return [SimpleNamespace(index=i, time=i / fps, face_ok=bool(o), expression=v.copy())
            for i, (v, o) in enumerate(zip(x, ok))]


def _lag(y: np.ndarray, x: np.ndarray) -> int:
    """The shift (frames, -3..3) that best aligns ``y`` to ``x`` (positive: ``y`` is late)."""
    return max(range(-3, 4), key=lambda L: np.corrcoef(np.roll(y, -L)[5:-5], x[5:-5])[0, 1])


def test_centred_gaussian_has_no_lag_and_keeps_lines():
    """A ramp (any line) is kept exactly; a mouth opening and closing 4 times a second (syllables) is
    smoothed without delay, while the capture's causal One Euro answers it a frame or more late."""
    T, fps = 100, 25.0
    ramp = np.linspace(0.0, 1.0, T)[:, None] * [1.0, -2.0]
    assert np.allclose(centred_gaussian(ramp, np.ones(T, bool), 1.5), ramp)
    mouth = 0.3 + 0.3 * np.sin(2 * np.pi * 4.0 * np.arange(T) / fps)
    sm = centred_gaussian(mouth[:, None], np.ones(T, bool), EXPRESSION_SIGMA_S * fps)[:, 0]
    f = OneEuroFilter(expression_smoothing(SmoothingConfig()))
    causal = np.array([f(np.array([v]), i / fps)[0] for i, v in enumerate(mouth)])
    assert _lag(sm, mouth) == 0
    assert _lag(causal, mouth) >= 1


def test_centred_gaussian_matches_scipy_inside_and_stops_at_gaps():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    ok = np.ones(80, bool)
    ok[40] = False
    s = 1.2
    h = int(np.floor(WINDOW_SIGMAS * s))
    out = centred_gaussian(x, ok, s)
    ref = gaussian_filter1d(x, s, axis=0, truncate=h / s)
    inner = np.r_[h:40 - h, 41 + h:80 - h]
    assert np.allclose(out[inner], ref[inner])
    # next to the gap and the clip's ends the window shrinks to stay symmetric: those frames are kept
    for i in (0, 39, 41, 79):
        assert np.allclose(out[i], x[i])
    assert np.allclose(out[40], x[40])                      # the frame without a face is left alone
    # one frame from the gap: the window is -1..1
    w = np.exp(-0.5 * (np.array([-1.0, 0.0, 1.0]) / s) ** 2)
    assert np.allclose(out[38], (w[:, None] * x[37:40]).sum(0) / w.sum())


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_streaming_smoother_equals_the_array_version(fps):
    """Records pushed in uneven batches and flushed come out in order, smoothed as centred_gaussian does."""
    rng = np.random.default_rng(1)
    T = 90
    x = rng.normal(size=(T, 52))
    ok = rng.uniform(size=T) > 0.1
    sm = CentredExpressionSmoother(EXPRESSION_SIGMA_S)
    recs, out, i = _records(x, ok, fps), [], 0
    for n in (1, 5, 2, 17, 3, 40, 22):
        out += sm.push(recs[i:i + n])
        i += n
    out += sm.flush()
    assert [r.index for r in out] == list(range(T))
    got = np.stack([r.expression for r in out])
    assert np.allclose(got, centred_gaussian(x, ok, EXPRESSION_SIGMA_S * fps))
    assert not np.allclose(got[ok], x[ok])                  # it did smooth


def test_smoothing_strength_scales_sigma():
    d = SmoothingConfig().min_cutoff
    assert expression_sigma_s(d, d) == pytest.approx(EXPRESSION_SIGMA_S)
    assert expression_sigma_s(d / 2, d) == pytest.approx(2 * EXPRESSION_SIGMA_S)   # stronger: wider
