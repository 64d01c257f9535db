"""Drawing for the contact sheet of ``eval video``: a fast CPU mesh renderer and keypoint overlays.

:func:`render_mesh` paints a posed mesh seen by a pinhole camera with the painter's algorithm:
triangles sorted back to front by mean depth, each filled with OpenCV's ``fillConvexPoly``
(sub-pixel vertices) in one flat colour, Lambert-shaded by a light at the camera (two-sided, so
the winding of the mesh does not matter).  On a closed body mesh seen from outside, sorting by
triangle depth hides the far side; it is a preview, not a z-buffer.  ~30 k triangles take a few
tenths of a second.

Pixel convention as everywhere in the project: continuous coordinates, ``(0, 0)`` at the top-left
corner of the top-left pixel, so pixel ``(row i, col j)`` covers ``[j, j+1) x [i, i+1)``.
OpenCV is imported inside the drawing functions, so :func:`project` stays light (the CLI imports
``eval video`` for ``--help``).
"""
from __future__ import annotations

from typing import Final

import numpy as np

#: avatar colour (BGR, a pink rarely worn or seen in sport footage) and the part of it that is ambient light
AVATAR_BGR: Final[tuple[float, float, float]] = (235.0, 130.0, 240.0)
AMBIENT: Final[float] = 0.25
#: detector points / projected model points (BGR)
DETECTOR_BGR: Final[tuple[int, int, int]] = (60, 220, 60)
MODEL_BGR: Final[tuple[int, int, int]] = (40, 40, 240)
LINE_BGR: Final[tuple[int, int, int]] = (0, 230, 255)
_NEAR: Final[float] = 1e-3
_SHIFT: Final[int] = 4           # fillConvexPoly fractional bits: 1/16 px


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection ``(..., 3)`` camera space (x right, y down, z forward) -> px ``(..., 2)``
    with the full ``K (3, 3)`` (skew and principal point included); NaN behind the camera."""
    p = np.asarray(points_cam, np.float64) @ np.asarray(K, np.float64).T
    z = np.where(p[..., 2:3] > 1e-9, p[..., 2:3], np.nan)
    return p[..., :2] / z


def render_mesh(verts_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int,
                colour=AVATAR_BGR) -> tuple[np.ndarray, np.ndarray]:
    """Paint a mesh: ``verts_cam (V, 3)`` camera space, ``faces (F, 3)``, ``K (3, 3)`` ->
    ``(image (H, W, 3) uint8 BGR, mask (H, W) bool)`` (black and False where no triangle is)."""
    import cv2

    v = np.asarray(verts_cam, np.float64)
    f = np.asarray(faces, np.int64)
    img = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    tri = v[f]                                                          # (F, 3, 3)
    px = project(tri, K)                                                # (F, 3, 2)
    keep = (tri[..., 2] > _NEAR).all(1) & np.isfinite(px).all((1, 2))
    lo, hi = px.min(1), px.max(1)
    keep &= (hi[:, 0] >= 0) & (lo[:, 0] <= width) & (hi[:, 1] >= 0) & (lo[:, 1] <= height)
    # enormous triangles (a vertex almost at the camera plane) would stall the filler
    keep &= (hi - lo).max(1) < 4 * max(width, height)
    tri, px = tri[keep], px[keep]
    if not len(tri):
        return img, mask.astype(bool)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centre = tri.mean(1)
    view = centre / np.linalg.norm(centre, axis=1, keepdims=True)
    lam = np.abs((n * view).sum(1)) / np.maximum(np.linalg.norm(n, axis=1), 1e-12)
    shade = AMBIENT + (1.0 - AMBIENT) * lam                              # (F,)
    cols = np.clip(shade[:, None] * np.asarray(colour, np.float64), 0, 255).round().astype(int)
    pts = np.round(px * (1 << _SHIFT)).astype(np.int32)                 # (F, 3, 2) fixed point
    # a pixel's centre is (j + 0.5, i + 0.5): OpenCV's integer grid is at centres, so shift by -0.5
    pts -= 1 << (_SHIFT - 1)
    for i in np.argsort(-centre[:, 2], kind="stable"):                 # far to near
        c = cols[i]
        cv2.fillConvexPoly(img, pts[i], (int(c[0]), int(c[1]), int(c[2])), cv2.LINE_8, _SHIFT)
        cv2.fillConvexPoly(mask, pts[i], 255, cv2.LINE_8, _SHIFT)
    return img, mask > 0


def overlay(frame: np.ndarray, layer: np.ndarray, mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """``frame`` with ``layer`` blended in at ``alpha`` where ``mask``; a new uint8 image."""
    out = frame.astype(np.float32)
    m = mask[..., None] * np.float32(alpha)
    return np.clip(out * (1 - m) + layer.astype(np.float32) * m + 0.5, 0, 255).astype(np.uint8)


def draw_keypoints(frame: np.ndarray, detected: np.ndarray, model: np.ndarray, used: np.ndarray,
                   radius: int = 2) -> np.ndarray:
    """Detector points (green) and projected model points (red) joined by a line (yellow),
    for the rows ``used (K,)`` bool; ``detected``/``model`` ``(K, 2)`` px.  A new image."""
    import cv2

    out = frame.copy()
    s = 1 << _SHIFT
    to_fixed = lambda p: (int(round((p[0] - 0.5) * s)), int(round((p[1] - 0.5) * s)))  # noqa: E731
    rows = np.nonzero(used & np.isfinite(detected).all(1) & np.isfinite(model).all(1))[0]
    for k in rows:
        cv2.line(out, to_fixed(detected[k]), to_fixed(model[k]), LINE_BGR, 1, cv2.LINE_AA, _SHIFT)
    for k in rows:
        cv2.circle(out, to_fixed(detected[k]), radius * s, DETECTOR_BGR, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(out, to_fixed(model[k]), radius * s, MODEL_BGR, -1, cv2.LINE_AA, _SHIFT)
    return out


def label(img: np.ndarray, text: str) -> None:
    """Write ``text`` in the top-left corner of ``img`` (in place), white on a dark band."""
    import cv2

    scale = float(np.clip(img.shape[1] / 800, 0.3, 0.6))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (w + 6, h + base + 6), (0, 0, 0), -1)
    cv2.putText(img, text, (3, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
