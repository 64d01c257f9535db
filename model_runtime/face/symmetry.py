"""A mirror-symmetric MediaPipe-468 correspondence for a mirror-symmetric face model (issue 11).

The correspondence (:mod:`.correspondence`) is traced with MediaPipe on renders, and MediaPipe does not
place its points symmetrically on a symmetric face; :func:`symmetrize` makes each left/right pair of
landmarks exact mirror images (and midline landmarks lie on the midline), using MediaPipe's own mirror
table (``correspondence.build_mirror_table``, shipped as ``assets/face_mp468_mirror.npz``).  Measured on real clips
and not switched on by default (``FULLBODY_SYMMETRIC_FACE=1``; docs/face.md, "A symmetric
correspondence").
"""
from __future__ import annotations

from pathlib import Path
from typing import Final

import dataclasses

import numpy as np

from ..core.asset_io import ASSET_DIR as _ASSET_DIR
from ..core.errors import ModelFileError
from ..core.safe_npz import load_npz
from ..models.face_model import FaceModel

#: MediaPipe's face-mesh landmarks (without the 10 iris points)
NUM_MP_LANDMARKS: Final[int] = 468

#: MediaPipe's left/right mirror of its 468 landmarks (``mirror[i]`` = the landmark at the mirror
#: image of ``i``; an involution, midline points map to themselves), built by
#: ``tools/build_face_correspondence.py`` from renders of the built-in face and their flips
#: (``correspondence.build_mirror_table``).
BUILTIN_MIRROR_PATH: Final[Path] = _ASSET_DIR / "face_mp468_mirror.npz"
#: a face model counts as mirror-symmetric (about its x = 0 plane) when every vertex has a mirror
#: vertex within this fraction of its eye-corner distance
SYMMETRY_TOLERANCE: Final[float] = 1e-4


def load_mirror_table(path: str | Path = BUILTIN_MIRROR_PATH) -> np.ndarray:
    """``(468,)`` int64 MediaPipe mirror table (:data:`BUILTIN_MIRROR_PATH`); raises
    :class:`ModelFileError` naming the file when it is missing or not an involution of 0..467."""
    z = load_npz(path, ("mirror",))
    m = np.asarray(z["mirror"]).astype(np.int64)
    if m.shape != (NUM_MP_LANDMARKS,) or m.min() < 0 or m.max() >= NUM_MP_LANDMARKS or (m[m] != np.arange(len(m))).any():
        raise ModelFileError(path, "mirror", "is not a left/right involution of the 468 landmarks")
    return m


def mirror_vertices(mean: np.ndarray, tol: float) -> np.ndarray | None:
    """``(N,)`` index of each vertex's mirror image about x = 0, or None if some vertex has none
    within ``tol`` (the mesh is not mirror-symmetric).  ``mean (N, 3)``."""
    from scipy.spatial import cKDTree

    flipped = mean * np.array([-1.0, 1.0, 1.0])
    d, idx = cKDTree(mean).query(flipped)
    return idx.astype(np.int64) if float(d.max()) <= tol else None


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentrics ``(..., 3)`` of the point of each triangle ``(a, b, c)`` nearest to ``p``; all
    ``(..., 3)`` (Ericson, *Real-Time Collision Detection*, 5.1.5, vectorised over the batch)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    den = np.where(np.abs(va + vb + vc) > 1e-30, va + vb + vc, 1.0)
    v, w = vb / den, vc / den
    out = np.stack([1.0 - v - w, v, w], -1)                                    # inside the face
    safe = lambda x: np.where(np.abs(x) > 1e-30, x, 1.0)  # noqa: E731
    t_ab, t_ac = d1 / safe(d1 - d3), d2 / safe(d2 - d6)
    t_bc = (d4 - d3) / safe((d4 - d3) + (d5 - d6))
    zero = np.zeros_like(d1)
    cases = [  # (condition, barycentrics), the later ones first overwritten by the earlier
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), np.stack([zero, 1 - t_bc, t_bc], -1)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t_ac, zero, t_ac], -1)),
        ((d6 >= 0) & (d5 <= d6), np.stack([zero, zero, zero + 1], -1)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t_ab, t_ab, zero], -1)),
        ((d3 >= 0) & (d4 <= d3), np.stack([zero, zero + 1, zero], -1)),
        ((d1 <= 0) & (d2 <= 0), np.stack([zero + 1, zero, zero], -1)),
    ]
    for cond, bary in cases:
        out = np.where(cond[..., None], bary, out)
    return out


def surface_points(verts: np.ndarray, faces: np.ndarray, q: np.ndarray, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The surface point nearest to each ``q (M, 3)`` on the mesh ``verts (N, 3)``, ``faces (F, 3)``,
    among the triangles around its ``k`` nearest vertices -> ``(vertex_ids (M, 3), bary (M, 3))``."""
    from scipy.spatial import cKDTree

    _, near = cKDTree(verts).query(q, k=k)                                       # (M, k)
    touch = np.zeros((len(q), len(verts)), bool)
    touch[np.arange(len(q))[:, None], near] = True
    cand = touch[:, faces].any(-1)                                               # (M, F) triangles around q
    m, f = np.nonzero(cand)
    tri = verts[faces[f]]                                                        # (C, 3, 3)
    bary = closest_on_triangles(q[m], tri[:, 0], tri[:, 1], tri[:, 2])
    dist = np.linalg.norm((tri * bary[..., None]).sum(1) - q[m], axis=-1)
    order = np.lexsort((dist, m))
    first = order[np.r_[True, m[order][1:] != m[order][:-1]]]                    # nearest per point
    return faces[f[first]].astype(np.int64), bary[first]


def midline_points(verts: np.ndarray, faces: np.ndarray, vmirror: np.ndarray, q: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The point nearest to each ``q (M, 3)`` on the mesh's midline (its edges between vertices that
    are their own mirror, ``vmirror``: :func:`mirror_vertices`), so that it is exactly on x = 0
    -> ``(vertex_ids (M, 3), bary (M, 3))``."""
    on = vmirror == np.arange(len(verts))
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.sort(e[on[e].all(1)], axis=1), axis=0)                     # (E, 2) midline edges
    a, b = verts[e[:, 0]], verts[e[:, 1]]                                        # (E, 3)
    ab = b - a
    t = np.clip(((q[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-30), 0.0, 1.0)
    d = np.linalg.norm(a[None] + t[..., None] * ab[None] - q[:, None], axis=-1)  # (M, E)
    k = d.argmin(1)
    tk = t[np.arange(len(q)), k]
    vid = np.stack([e[k, 0], e[k, 1], e[k, 1]], -1).astype(np.int64)
    return vid, np.stack([1.0 - tk, tk, np.zeros_like(tk)], -1)


def symmetrize(model: FaceModel, corr, mirror: np.ndarray):
    """Make the correspondence ``corr`` (a :class:`~.correspondence.FaceCorrespondence`) of a
    mirror-symmetric face model mirror-symmetric -> a new one (a model that is not: ``corr`` itself).

    The correspondence is traced with MediaPipe on renders, and MediaPipe does not place its points
    symmetrically on a symmetric face (on the built-in face: the nose tip 3 mm off the midline, the
    lower lids 4 mm apart in x), so a symmetric face fitted to a symmetric person came out lopsided.
    Each landmark's point becomes the mean of its own and its mirror partner's point reflected
    (``mirror``: :func:`load_mirror_table`), put back on the surface (:func:`surface_points`); the
    partner takes its exact mirror image (the mirror vertices, the same barycentrics); midline
    landmarks on the mesh's midline (:func:`midline_points`); weights and spreads are averaged over
    each pair.  A model that is not mirror-symmetric (BFM) is returned unchanged."""
    mean = np.asarray(model.mean_shape, np.float64)
    P = corr.points(mean[None])[0]
    scale = float(np.linalg.norm(P[33] - P[263]))
    vmirror = mirror_vertices(mean, SYMMETRY_TOLERANCE * scale)
    if vmirror is None:
        return corr
    flip = np.array([-1.0, 1.0, 1.0])
    target = 0.5 * (P + P[mirror] * flip)                                        # (468, 3)
    faces = np.asarray(model.faces, np.int64)
    idx = np.arange(len(mirror))
    own, mid = np.flatnonzero(idx < mirror), np.flatnonzero(idx == mirror)      # one of each pair; midline
    vid, bary = corr.vertex_ids.copy(), corr.bary.astype(np.float64).copy()
    vid[own], bary[own] = surface_points(mean, faces, target[own])
    vid[mid], bary[mid] = midline_points(mean, faces, vmirror, target[mid])
    vid[mirror[own]], bary[mirror[own]] = vmirror[vid[own]], bary[own]          # the partners: mirror images
    pair_mean = lambda x: None if x is None else (0.5 * (x + x[mirror])).astype(np.float32)  # noqa: E731
    return dataclasses.replace(corr, vertex_ids=vid, bary=bary.astype(np.float32), weights=pair_mean(corr.weights),
                               spread_m=pair_mean(corr.spread_m))
