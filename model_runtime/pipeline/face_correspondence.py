"""MediaPipe face mesh (468 points) -> surface points of a 3DMM, computed once per face model.

The fitting's landmark term needs to know *where on the 3DMM* each of MediaPipe's
468 landmarks lies.  MediaPipe does not ship its canonical face mesh in the
Python wheel, so the correspondence is measured the direct way: the face model's
mean shape is rendered with its mean albedo from several viewpoints
(:mod:`face_render`), MediaPipe's face mesh runs on every render, and each
detected landmark is traced back through the rasteriser to the triangle and
barycentric point under it.  Per landmark the per-view surface points are
pooled: the sample nearest to their (component-wise) median is kept, and the
spread of the samples gives the landmark's reliability weight.  Landmarks on
the face oval (silhouette points that slide with the head pose) are
down-weighted further.

* Built-in face: the result is shipped as ``assets/face_mp468_correspondence.npz``
  (built by ``tools/build_face_correspondence.py``), checked against the model
  by a signature of its topology and mean shape.
* Other models (BFM files cannot be shipped): built at first use and cached
  under ``$FULLBODY_CACHE`` (default ``~/.cache/fullbody_capture``).

Arrays: ``vertex_ids (468, 3)`` int, ``bary (468, 3)`` float (rows sum to 1),
``weights (468,)`` in (0, 1].
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from .. import _backend as Bk
from ..errors import ModelFileError
from ..face_model import NUM_SH, FaceModel

CORRESPONDENCE_VERSION: Final[int] = 1
NUM_MP_LANDMARKS: Final[int] = 468
BUILTIN_CORRESPONDENCE_PATH: Final[Path] = (
    Path(__file__).resolve().parent.parent / "assets" / "face_mp468_correspondence.npz")

# The standard MediaPipe-468 -> iBUG-68 index map (jaw 0-16, brows 17-26, nose 27-35,
# eyes 36-47, mouth 48-67), as used across the MediaPipe community.
MP468_TO_IBUG68: Final[np.ndarray] = np.array([
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
], dtype=np.int64)

# Weight factor for landmarks on MediaPipe's face oval (they follow the silhouette,
# not a fixed surface point, as the head turns).
OVAL_WEIGHT: Final[float] = 0.3


@dataclass(frozen=True)
class FaceCorrespondence:
    """468 MediaPipe landmarks as barycentric points on a face model's triangles.

    vertex_ids ``(468, 3)`` int64, bary ``(468, 3)`` float32, weights ``(468,)`` float32;
    ``model_signature`` identifies the face model it was built for (:func:`model_signature`).
    """

    vertex_ids: np.ndarray
    bary: np.ndarray
    weights: np.ndarray
    model_signature: str
    version: int = CORRESPONDENCE_VERSION

    def points(self, verts):
        """Surface points of the landmarks: verts ``(B, N, 3)`` -> ``(B, 468, 3)`` (torch or numpy)."""
        ids = Bk.asarray_like(self.vertex_ids, verts) if Bk.is_torch(verts) else self.vertex_ids
        bary = Bk.asarray_like(self.bary, verts)
        return (verts[:, ids] * bary[None, :, :, None]).sum(-2)

    def check(self, model: FaceModel, path: str | Path = "<correspondence>") -> "FaceCorrespondence":
        """Raise :class:`ModelFileError` unless this correspondence fits ``model``; returns self."""
        if self.version != CORRESPONDENCE_VERSION:
            raise ModelFileError(path, "version", f"is {self.version}, this runtime reads {CORRESPONDENCE_VERSION}")
        for name, arr, shape in (("vertex_ids", self.vertex_ids, (NUM_MP_LANDMARKS, 3)),
                                 ("bary", self.bary, (NUM_MP_LANDMARKS, 3)),
                                 ("weights", self.weights, (NUM_MP_LANDMARKS,))):
            if arr.shape != shape:
                raise ModelFileError(path, name, f"has shape {arr.shape}, expected {shape}")
        if self.vertex_ids.min() < 0 or self.vertex_ids.max() >= model.num_vertices:
            raise ModelFileError(path, "vertex_ids", f"outside 0..{model.num_vertices - 1}")
        sig = model_signature(model)
        if self.model_signature != sig:
            raise ModelFileError(path, "model_signature", f"is {self.model_signature}, but the face model "
                                 f"{model.source or model.kind} has {sig}; rebuild it with "
                                 "tools/build_face_correspondence.py")
        return self

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, version=np.int64(self.version), vertex_ids=self.vertex_ids.astype(np.int32),
                            bary=self.bary.astype(np.float32), weights=self.weights.astype(np.float32),
                            model_signature=np.array(self.model_signature))


def load_correspondence_file(path: str | Path) -> FaceCorrespondence:
    """Read a correspondence ``.npz`` (no model check; see :meth:`FaceCorrespondence.check`)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return FaceCorrespondence(
                vertex_ids=z["vertex_ids"].astype(np.int64), bary=z["bary"].astype(np.float32),
                weights=z["weights"].astype(np.float32), model_signature=str(z["model_signature"]),
                version=int(z["version"]))
    except FileNotFoundError:
        raise ModelFileError(path, None, "is missing; run tools/build_face_correspondence.py") from None
    except KeyError as e:
        raise ModelFileError(path, str(e.args[0]), "is missing") from None
    except Exception as e:  # truncated zip, bad dtype, ...
        raise ModelFileError(path, None, f"cannot read ({e})") from e


def model_signature(model: FaceModel) -> str:
    """Short hash of a face model's topology and mean shape (what the correspondence depends on)."""
    h = hashlib.sha1()
    h.update(np.asarray(model.faces, np.int64).tobytes())
    h.update(np.round(np.asarray(model.mean_shape, np.float64), 5).tobytes())
    return f"{model.num_vertices}v{len(model.faces)}f-{h.hexdigest()[:12]}"


def cache_dir() -> Path:
    return Path(os.environ.get("FULLBODY_CACHE", Path.home() / ".cache" / "fullbody_capture"))


def correspondence_for(model: FaceModel) -> FaceCorrespondence:
    """The correspondence of ``model``: the shipped file for the built-in face, else built once and cached."""
    if model.kind == "builtin":
        path = BUILTIN_CORRESPONDENCE_PATH
        return load_correspondence_file(path).check(model, path)
    path = cache_dir() / f"face_mp468_{model_signature(model)}.npz"
    if path.is_file():
        try:
            return load_correspondence_file(path).check(model, path)
        except ModelFileError:
            pass  # stale/corrupt cache: rebuild below
    corr = build_correspondence(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    corr.save(tmp)
    os.replace(tmp, path)
    return corr


# ----------------------------------------------------------------------------- building

DEFAULT_VIEWS: Final[tuple[tuple[float, float], ...]] = tuple(
    (yaw, pitch) for yaw in (-24.0, -12.0, 0.0, 12.0, 24.0) for pitch in (-10.0, 0.0, 10.0))


def _view_rotation(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Model (Y up, face +Z) -> camera (x right, y down, z forward) for a head turned by yaw/pitch."""
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    flip = np.diag([1.0, -1.0, -1.0])          # face looks at the camera
    return flip @ Rx @ Ry


def _front_light() -> np.ndarray:
    """SH ``(27,)``: soft ambient plus a light from the camera, white, in camera axes."""
    mu = np.zeros(NUM_SH)
    mu[0] = 0.8                                 # times pi/sqrt(4 pi) in sh_basis -> ~0.71 ambient
    mu[2] = -0.35                               # z band: normals facing the camera (-z) get more light
    return np.tile(mu, 3)


def _detect_mediapipe(images_bgr: list[np.ndarray]) -> list[np.ndarray | None]:
    """MediaPipe face mesh (still-image mode) on each image -> ``(468, 2)`` px or None."""
    import cv2
    import mediapipe as mp

    out: list[np.ndarray | None] = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                         min_detection_confidence=0.3) as fm:
        for img in images_bgr:
            h, w = img.shape[:2]
            res = fm.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            if not res.multi_face_landmarks:
                out.append(None)
                continue
            lm = res.multi_face_landmarks[0].landmark
            out.append(np.array([[p.x * w, p.y * h] for p in lm[:NUM_MP_LANDMARKS]], np.float64))
    return out


def _oval_indices() -> np.ndarray:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    return np.unique(np.array(sorted(FACEMESH_FACE_OVAL), np.int64).ravel())


def _barycentric(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """2D barycentrics of points ``(M, 2)`` in triangles ``(M, 3, 2)``, clamped inside -> ``(M, 3)``."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(-1), (v0 * v1).sum(-1), (v1 * v1).sum(-1)
    d20, d21 = (v2 * v0).sum(-1), (v2 * v1).sum(-1)
    den = np.where(np.abs(d00 * d11 - d01 * d01) > 1e-12, d00 * d11 - d01 * d01, 1.0)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1 - v - w, v, w], -1), 0.0, None)
    return bary / np.maximum(bary.sum(-1, keepdims=True), 1e-12)


def build_correspondence(model: FaceModel, views=DEFAULT_VIEWS, size: int = 512,
                         min_views: int = 2) -> FaceCorrespondence:
    """Measure the MediaPipe-468 correspondence of ``model`` by running MediaPipe on renders of it.

    ``views``: (yaw, pitch) degrees of the rendered mean face; ``size``: render side in px.
    Raises :class:`ModelFileError` if MediaPipe finds the face in fewer than ``min_views``
    renders or some landmark is never traced to the surface.
    """
    from .face_render import intrinsics, project, render_face

    src = model.source or model.kind
    mean = np.asarray(model.mean_shape, np.float64)
    centre = 0.5 * (mean.min(0) + mean.max(0))
    extent = float(np.linalg.norm(mean.max(0) - mean.min(0)))
    K = intrinsics(size, size, fov_deg=20.0)
    dist = K[0, 0] * extent / (0.75 * size)                 # the model spans ~75% of the image
    zeros = {k: np.zeros(n) for k, n in (("identity", model.id_basis.shape[2]),
                                         ("expression", model.exp_basis.shape[2]),
                                         ("albedo", model.albedo_basis.shape[2]))}
    faces = np.asarray(model.faces, np.int64)
    renders, projections = [], []
    for yaw, pitch in views:
        R = _view_rotation(yaw, pitch)
        t = np.array([0.0, 0.0, dist]) - R @ centre
        img, raster = render_face(model, zeros["identity"], zeros["expression"], zeros["albedo"],
                                  _front_light(), R, t, K, size, size, background=(0.18, 0.18, 0.2))
        renders.append((img, raster))
        projections.append(project(mean @ R.T + t, K))       # (N, 2) px

    detections = _detect_mediapipe([img for img, _ in renders])
    samples_tri, samples_bary, samples_pt = [], [], []       # per view: (468,), (468,3), (468,3)
    for (img, raster), lm, proj in zip(renders, detections, projections):
        if lm is None:
            continue
        fid = raster.face_id.numpy()
        r = np.clip(np.floor(lm[:, 1]).astype(int), 0, size - 1)
        c = np.clip(np.floor(lm[:, 0]).astype(int), 0, size - 1)
        tri = fid[r, c]
        miss = tri < 0
        if miss.any():                                       # landmark just off the silhouette:
            ys, xs = np.nonzero(fid >= 0)                    # nearest covered pixel within 4 px
            d2 = (ys[None] - r[miss, None]) ** 2 + (xs[None] - c[miss, None]) ** 2
            k = d2.argmin(1)
            near = d2[np.arange(len(k)), k] <= 16
            tri_m = np.where(near, fid[ys[k], xs[k]], -1)
            tri[miss] = tri_m
        ok = tri >= 0
        bary = np.zeros((NUM_MP_LANDMARKS, 3))
        bary[ok] = _barycentric(lm[ok], proj[faces[tri[ok]]])
        pts = np.full((NUM_MP_LANDMARKS, 3), np.nan)
        pts[ok] = (mean[faces[tri[ok]]] * bary[ok, :, None]).sum(1)
        samples_tri.append(tri)
        samples_bary.append(bary)
        samples_pt.append(pts)
    if len(samples_pt) < min_views:
        raise ModelFileError(src, None, f"MediaPipe found the rendered face in {len(samples_pt)} of {len(views)} "
                             f"views (need {min_views}); cannot build the landmark correspondence")
    P = np.stack(samples_pt)                                 # (V, 468, 3), NaN where untraced
    T = np.stack(samples_tri)                                # (V, 468)
    Bc = np.stack(samples_bary)                              # (V, 468, 3)
    n_ok = np.isfinite(P[..., 0]).sum(0)
    if (n_ok == 0).any():
        bad = np.nonzero(n_ok == 0)[0][:10].tolist()
        raise ModelFileError(src, None, f"MediaPipe landmarks {bad} never fall on the rendered face")
    med = np.nanmedian(P, axis=0)                            # (468, 3)
    dist_to_med = np.linalg.norm(P - med[None], axis=-1)     # (V, 468), NaN where untraced
    best = np.nanargmin(np.where(np.isfinite(dist_to_med), dist_to_med, np.inf), axis=0)
    idx = np.arange(NUM_MP_LANDMARKS)
    tri_best = T[best, idx]
    vertex_ids = faces[tri_best]
    bary = Bc[best, idx]

    # reliability: spread of the per-view samples relative to the eye-corner distance
    iod = float(np.linalg.norm(med[33] - med[263]))
    spread = np.sqrt(np.nanmean(dist_to_med ** 2, axis=0))
    weights = np.exp(-((spread / (0.05 * iod)) ** 2)) * np.minimum(1.0, n_ok / max(3, len(P) // 2))
    weights[_oval_indices()] *= OVAL_WEIGHT
    weights = np.clip(weights, 0.05, 1.0)
    return FaceCorrespondence(vertex_ids=vertex_ids.astype(np.int64), bary=bary.astype(np.float32),
                              weights=weights.astype(np.float32), model_signature=model_signature(model))
