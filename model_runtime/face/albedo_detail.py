"""The face's colour detail: per-vertex albedo seen in the video, on top of the 3DMM's albedo (numpy only).

The 3DMM albedo (Eq. 4, 80 components) is smooth: it gives the skin's tone but not the brows, the lash
lines, the lips' colour or a beard.  Those are in the image.  Every :data:`SAMPLE_EVERY` tracked face
frames once the clip identity is learnt (at most :data:`MAX_SAMPLES` frames of a clip; the face stage
decides, :class:`~.stage.FaceFitStage`) :class:`AlbedoDetail` samples the image at
every face vertex, posed by the tracker (its rotation, translation, expression and the clip identity,
so the vertices lie on the person's landmarks), where the vertex faces the camera
(:func:`vertex_visibility`: its normal within ~72 degrees of the view ray, in front in a coarse z-buffer,
inside the image) and lies inside MediaPipe's face oval (not the hair or the background around it).  At the end, each vertex's colour samples are divided by the irradiance of the clip's
lighting (Eq. 5 with the latest keyframe's SH, for that sample's normal), the median over the samples
is the vertex's observed albedo, and the detail is that minus the 3DMM albedo, faded in over the first
:data:`FULL_SAMPLES` samples (vertices seen once or never keep the 3DMM albedo).  The median keeps a
lip's colour when a few samples catch the mouth open, a lid's when a few catch a blink.

Hair inside the oval (a fringe on the forehead, strands down the cheek sides) is in every sample, so the
median keeps it; the avatar has no hair, so it would be painted on the skin.  :func:`hair_zone` marks
where head hair falls (above the brows, and the face's sides outside the cheekbones down to the mouth corners,
away from the brows, eyes, nose and lips, whose dark colour is the person's); there a vertex whose
observed albedo is much darker than the clip's skin (luminance below :data:`HAIR_LUMINANCE` of the median
of the vertices outside the zone and the features) keeps the 3DMM albedo, faded in between.  The lower
face (a beard, a moustache) is left as seen.

Shapes: face vertices ``(N, 3)`` camera space (x right, y down, z forward); colours linear RGB;
``detail (N, 3)`` linear RGB, added to the 3DMM albedo by the avatar
(:meth:`model_runtime.models.full_model.FullBodyModel.vertex_colors`).
"""
from __future__ import annotations

import threading
from typing import Final

import numpy as np

from ..models.face_model import sh_irradiance

#: tracked face frames between two samples (0.4 s at 30 fps), and the most samples of a clip
SAMPLE_EVERY: Final[int] = 12
MAX_SAMPLES: Final[int] = 24
#: a vertex is sampled where the cosine between its normal and the ray to the camera is above this
MIN_COS: Final[float] = 0.3
#: samples that give a vertex its full detail (fewer: faded towards the 3DMM albedo)
FULL_SAMPLES: Final[int] = 3
#: z-buffer grid cells across the face's image box, and the depth tolerance (fraction of the face's depth range)
ZBUFFER_CELLS: Final[int] = 48
ZBUFFER_TOLERANCE: Final[float] = 0.1
#: irradiance below this is too dark to divide by
MIN_IRRADIANCE: Final[float] = 0.05
#: MediaPipe-468 landmarks of the features whose dark colours belong to the face (brows, eyes, lips, nose)
FEATURE_LANDMARKS: Final[tuple[int, ...]] = (
    276, 282, 283, 285, 293, 295, 296, 300, 334, 336, 46, 52, 53, 55, 63, 65, 66, 70, 105, 107,      # brows
    249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466,                 # left eye
    7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246,                    # right eye
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,      # lips
    267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415,
    1, 2, 4, 5, 6, 19, 45, 48, 64, 94, 97, 98, 115, 168, 195, 197, 220, 275, 278, 294, 326, 327, 344, 440)  # nose
#: a vertex within this many eye-corner distances of a feature landmark is a feature vertex
FEATURE_RADIUS_D: Final[float] = 0.12
#: the hair zone's sides start this many times the eyes' outer-corner distance from the face's midline
#: (the face's edge is at ~1.5, the cheekbones at ~1.0)
HAIR_SIDE: Final[float] = 1.2
#: hair-zone vertices whose luminance over the skin's is below the first keep the 3DMM albedo; above the
#: second, their detail; linear in between
HAIR_LUMINANCE: Final[tuple[float, float]] = (0.55, 0.8)
_LUMA: Final[np.ndarray] = np.array([0.2126, 0.7152, 0.0722])


def hair_zone(vertices: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where head hair may cover the face, on a neutral face: ``vertices (N, 3)`` and its MediaPipe-468
    ``landmarks (468, 3)`` (same space, any orientation) -> ``(zone (N,), skin (N,))`` bool:
    ``zone`` above the brows' top, or beyond :data:`HAIR_SIDE` times the eyes' outer corners from the
    midline and above the mouth corners, not
    near a feature (:data:`FEATURE_LANDMARKS`, :data:`FEATURE_RADIUS_D`); ``skin`` neither zone nor
    feature (the cheeks' centres, the nose's sides, the chin: the skin reference)."""
    v, lm = np.asarray(vertices, np.float64), np.asarray(landmarks, np.float64)
    right = lm[263] - lm[33]                                      # right eye's outer corner -> left eye's
    D = float(np.linalg.norm(right))
    right /= D
    up = lm[10] - lm[152]                                         # chin -> forehead, made orthogonal
    up -= (up @ right) * right
    up /= np.linalg.norm(up)
    o = lm[168]                                                   # between the eyes
    u, r = (v - o) @ up, (v - o) @ right
    brows = list(FEATURE_LANDMARKS[:20])
    u_brow = float(((lm[brows] - o) @ up).max())
    u_mouth = float(((lm[[61, 291]] - o) @ up).mean())
    r_eye = 0.5 * float(abs((lm[33] - o) @ right) + abs((lm[263] - o) @ right))
    feat = lm[list(FEATURE_LANDMARKS)]
    d2 = ((v[:, None, :] - feat[None]) ** 2).sum(-1).min(1)
    feature = d2 < (FEATURE_RADIUS_D * D) ** 2
    zone = ((u > u_brow) | ((np.abs(r) > HAIR_SIDE * r_eye) & (u > u_mouth))) & ~feature
    return zone, ~zone & ~feature


def vertex_visibility(cam: np.ndarray, normals: np.ndarray, px: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N,)`` bool: facing the camera (cos > :data:`MIN_COS`), not behind another part of the face
    in a coarse z-buffer (the nose hides a cheek of a turned head), inside the ``size (W, H)`` image.

    cam ``(N, 3)`` camera points, normals ``(N, 3)`` outward unit normals (camera axes), px ``(N, 2)``."""
    view = -cam / np.maximum(np.linalg.norm(cam, axis=1, keepdims=True), 1e-12)
    facing = (normals * view).sum(1) > MIN_COS
    W, H = size
    inside = (px[:, 0] >= 0) & (px[:, 0] <= W - 1) & (px[:, 1] >= 0) & (px[:, 1] <= H - 1)
    lo, hi = px.min(0), px.max(0)
    cell = np.clip(np.round((px - lo) / np.maximum(hi - lo, 1e-6) * (ZBUFFER_CELLS - 1)), 0, ZBUFFER_CELLS - 1).astype(int)
    key = cell[:, 1] * ZBUFFER_CELLS + cell[:, 0]
    z = np.where(facing, cam[:, 2], np.inf)
    zmin = np.full(ZBUFFER_CELLS * ZBUFFER_CELLS, np.inf)
    np.minimum.at(zmin, key, z)
    front = z <= zmin[key] + ZBUFFER_TOLERANCE * max(float(np.ptp(cam[:, 2])), 1e-6)
    return facing & front & inside


def inside_polygon(px: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: points ``px (N, 2)`` inside the closed polygon ``poly (M, 2)`` (even-odd rule,
    vectorised over points and edges)."""
    a, b = poly, np.roll(poly, -1, axis=0)                                     # edges a -> b
    x, y = px[:, 0:1], px[:, 1:2]
    crosses = (a[None, :, 1] > y) != (b[None, :, 1] > y)
    dy = np.where(b[:, 1] == a[:, 1], 1e-12, b[:, 1] - a[:, 1])[None]
    xi = a[None, :, 0] + (y - a[None, :, 1]) * (b[None, :, 0] - a[None, :, 0]) / dy
    return ((crosses & (x < xi)).sum(1) % 2) == 1


def sample_linear(image_bgr: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Bilinear samples ``(N, 3)`` linear RGB (gamma 2.2, the fitter's) of ``image_bgr`` at ``px (N, 2)``
    (clamped to the image)."""
    H, W = image_bgr.shape[:2]
    x = np.clip(px[:, 0], 0, W - 1.001)
    y = np.clip(px[:, 1], 0, H - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image_bgr[..., ::-1].astype(np.float64)
    c = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
         + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)
    return (c / 255.0) ** 2.2


class AlbedoDetail:
    """Per-vertex colour samples of one clip's face (module docstring); thread-safe."""

    def __init__(self, num_vertices: int, zone: tuple[np.ndarray, np.ndarray] | None = None):
        """``zone``: :func:`hair_zone`'s ``(zone, skin)`` masks of this face (None: no hair fading)."""
        self.num_vertices = int(num_vertices)
        self.zone = None if zone is None else (np.asarray(zone[0], bool), np.asarray(zone[1], bool))
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._colour: list[np.ndarray] = []        # (N, 3) per sample, NaN where not seen
            self._normal: list[np.ndarray] = []        # (N, 3)

    @property
    def samples(self) -> int:
        return len(self._colour)

    def add(self, image_bgr: np.ndarray, cam: np.ndarray, normals: np.ndarray, K: np.ndarray,
            oval: np.ndarray | None = None) -> bool:
        """Sample one frame: face vertices ``cam (N, 3)`` and outward ``normals (N, 3)`` in camera
        space, intrinsics ``K (3, 3)``, ``oval (M, 2)`` px the outline of the person's face (MediaPipe's
        face oval: vertices outside it, hair or background, are not sampled; None: no outline);
        -> whether it counted (a vertex seen)."""
        if cam.shape != (self.num_vertices, 3) or not (np.isfinite(cam).all() and np.isfinite(normals).all()):
            return False
        z = np.maximum(cam[:, 2:3], 1e-6)
        px = cam[:, :2] / z * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
        H, W = image_bgr.shape[:2]
        vis = vertex_visibility(cam, normals, px, (W, H))
        if oval is not None and np.isfinite(oval).all():
            vis &= inside_polygon(px, np.asarray(oval, np.float64)[:, :2])
        if not vis.any():
            return False
        col = np.where(vis[:, None], sample_linear(image_bgr, px), np.nan)
        with self._lock:
            if len(self._colour) >= MAX_SAMPLES:
                return False
            self._colour.append(col.astype(np.float32))
            self._normal.append(normals.astype(np.float32))
        return True

    def detail(self, base_albedo: np.ndarray, sh: np.ndarray) -> np.ndarray:
        """``(N, 3)`` float32 linear RGB to add to ``base_albedo (N, 3)`` (the 3DMM albedo of the
        clip's coefficients), with the lighting ``sh (27,)``; zeros without samples."""
        with self._lock:
            if not self._colour:
                return np.zeros((self.num_vertices, 3), np.float32)
            col, nrm = np.stack(self._colour).astype(np.float64), np.stack(self._normal).astype(np.float64)
        irr = sh_irradiance(nrm, sh)                                                       # (S, N, 3)
        alb = np.where(irr > MIN_IRRADIANCE, col / np.maximum(irr, MIN_IRRADIANCE), np.nan)
        seen = np.isfinite(alb).all(-1)                                                  # (S, N)
        count = seen.sum(0)
        ok = count > 0
        med = np.clip(_median_of_seen(np.where(seen[..., None], alb, np.inf), count), 0.0, 1.0)
        fade = np.clip(count / FULL_SAMPLES, 0.0, 1.0) * self.hair_weight(med, ok)
        base = np.asarray(base_albedo, np.float64)
        return (fade[:, None] * (med - base) * ok[:, None]).astype(np.float32)

    def hair_weight(self, observed: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """``(N,)`` in [0, 1]: how much of a vertex's detail to keep given the ``observed (N, 3)`` albedo
        (``seen (N,)`` where it has samples): 1 outside the hair zone, else by its luminance over the
        skin's median (:data:`HAIR_LUMINANCE`; module docstring)."""
        w = np.ones(self.num_vertices)
        if self.zone is None:
            return w
        zone, skin = self.zone
        lum = observed @ _LUMA
        ref = lum[skin & seen]
        if ref.size == 0:
            return w
        q = lum / max(float(np.median(ref)), 1e-6)
        lo, hi = HAIR_LUMINANCE
        return np.where(zone, np.clip((q - lo) / (hi - lo), 0.0, 1.0), w)


def _median_of_seen(x: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-vertex median over the first axis of ``x (S, N, 3)`` whose unseen samples are ``inf``
    (sorted last), ``count (N,)`` seen samples each -> ``(N, 3)`` (0 where none): one sort, where
    ``np.nanmedian`` took 20 ms for 24 samples of 3,068 vertices."""
    srt = np.sort(x, axis=0)
    lo = np.maximum((count - 1) // 2, 0)[None, :, None]
    hi = np.maximum(count // 2, 0)[None, :, None]
    take = lambda i: np.take_along_axis(srt, np.broadcast_to(i, (1,) + srt.shape[1:]), 0)[0]  # noqa: E731
    med = 0.5 * (take(lo) + take(hi))
    return np.where((count > 0)[:, None], med, 0.0)
