"""A clip's resting expression: the ARKit keys a face holds all the time (numpy only).

The face model's identity basis cannot open or close the eyes, raise the brows or shape the lips
(the expression basis projects onto it with 60-96 % of its norm left over), so a person whose
eyes are naturally wider than the model's neutral face is tracked with ``eyeWide*`` at ~0.4 on
every frame, and a mouth that rests a little open with ``jawOpen`` at its floor.  On the avatar
that is right (the render matches the video), but a retargeted character given those curves
stares and gapes: the curves mix who the person is with what she does.

:func:`rest_expression` estimates the resting level of each key as a low percentile over the
frames with a face; the add-on's import (option *Neutral Face*) moves that level into the mesh
(the rest shape ``sum_k rest_k * delta_k`` added to the basis and to every shape key, so each key's
own offset is unchanged) and keys ``expression - rest``.  The posed avatar is the same vertex for
vertex (nothing is clipped: a key may go below 0 where the face is below its usual level, e.g.
``eyeWide`` during a blink, inside the keys' -10..10 slider range), and the curves are what the
person does relative to her own neutral face, as ARKit's neutral calibration gives them.

The gaze keys (``eyeLook*``) are left alone: they turn the eyeballs, and a steady gaze off the
camera is a direction, not a shape.
"""
from __future__ import annotations

from typing import Final, Sequence

import numpy as np

#: the resting level of a key is this percentile of its values over the face frames
REST_PERCENTILE: Final[float] = 10.0
#: levels below this are noise and left at 0
MIN_REST: Final[float] = 0.02
#: at least this many face frames, else no resting expression (all 0)
MIN_FRAMES: Final[int] = 10
#: key names never calibrated (they drive the eyeballs' rotation)
EXCLUDED_PREFIXES: Final[tuple[str, ...]] = ("eyeLook",)


def face_frames(expression: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``(T,)`` bool: frames whose expression was tracked (a row of zeros is a frame without a face)
    and, given ``valid (T,)``, that hold a person; non-finite rows never count."""
    e = np.asarray(expression, np.float64)
    ok = np.isfinite(e).all(1) & (np.abs(np.nan_to_num(e)) > 0).any(1)
    if valid is not None:
        ok &= np.asarray(valid, bool).reshape(-1)[:len(ok)]
    return ok


def rest_expression(expression: np.ndarray, names: Sequence[str], valid: np.ndarray | None = None,
                    percentile: float = REST_PERCENTILE, min_rest: float = MIN_REST) -> np.ndarray:
    """The clip's resting level of every key.

    Args:
        expression: ``(T, E)`` the capture's ``face_expression``.
        names: ``(E,)`` its ``expression_names``.
        valid: ``(T,)`` the capture's ``valid`` or None.
    Returns ``(E,)`` float32: the ``percentile``-th value over the face frames (:func:`face_frames`)
    where it is at least ``min_rest``, else 0; 0 for the gaze keys and when fewer than
    :data:`MIN_FRAMES` frames have a face.
    """
    e = np.asarray(expression, np.float64)
    if e.ndim != 2 or e.shape[1] != len(names):
        raise ValueError(f"face_expression must be (T, {len(names)}), got {e.shape}")
    rows = face_frames(e, valid)
    rest = np.zeros(e.shape[1])
    if rows.sum() >= MIN_FRAMES:
        rest = np.percentile(e[rows], percentile, axis=0)
        rest[rest < min_rest] = 0.0
        rest[[i for i, n in enumerate(names) if str(n).startswith(EXCLUDED_PREFIXES)]] = 0.0
    return rest.astype(np.float32)


def rest_offsets(rest: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """The rest shape's vertex offsets ``(V, 3)``: ``sum_k rest_k * deltas_k`` of ``rest (E,)`` and
    the shape keys' offsets from the basis ``deltas (E, V, 3)``."""
    return np.tensordot(np.asarray(rest, np.float64), np.asarray(deltas, np.float64), axes=1)
