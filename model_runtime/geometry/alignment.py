"""Similarity / rigid alignment of corresponding point sets (Umeyama 1991, Kabsch 1976).

One function, :func:`fit_similarity`, for every alignment in the project (face pose
initialisation, face-to-body rim, Procrustes metrics, MoCap retargeting, shape spaces).

Convention (the same for numpy and torch)::

    dst  ~=  scale * src @ R.T + t          i.e.  dst_i ~= scale * R @ src_i + t

with ``R`` a proper rotation (``det R = +1``: a reflection is never returned), minimising
``sum_i w_i |scale * R @ src_i + t - dst_i|^2``.  The result is a :class:`Similarity`
``(R, t, scale)``; :meth:`Similarity.apply` maps points with it.

* numpy arrays: computed here in float64 (numpy only, so Blender's Python can use it);
* torch tensors: :func:`roma.rigid_points_registration` (or
  :func:`roma.rigid_vectors_registration` without translation), differentiable, on the
  tensors' device and dtype.  roma (and torch) are imported only then: importing this
  module never needs torch.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..core import backend

__all__ = ["Similarity", "fit_similarity"]

#: a source spread (weighted mean squared distance to the centroid) at or below this is degenerate
_MIN_SPREAD = 1e-24


class Similarity(NamedTuple):
    """``x -> scale * x @ R.T + t``: ``R (..., 3, 3)``, ``t (..., 3)``, ``scale (...)``.

    numpy arrays or torch tensors (whatever :func:`fit_similarity` was given); ``scale`` is 1
    for a rigid fit.  A single transform may also hold a Python float ``scale``.
    """

    R: Any
    t: Any
    scale: Any

    def apply(self, x):
        """Points ``(..., N, 3)`` (batch dims as the transform's, or none) -> ``(..., N, 3)``."""
        s = self.scale[..., None, None] if hasattr(self.scale, "ndim") else self.scale
        if backend.is_torch(self.R):
            import torch

            return s * torch.einsum("...ij,...nj->...ni", self.R, x) + self.t[..., None, :]
        return s * np.einsum("...ij,...nj->...ni", self.R, x) + self.t[..., None, :]

    def matrix(self) -> np.ndarray:
        """As homogeneous ``(..., 4, 4)`` float64 matrices (numpy)."""
        R, t, s = (np.asarray(_numpy(a), np.float64) for a in self)
        M = np.zeros(R.shape[:-2] + (4, 4))
        M[..., :3, :3] = s[..., None, None] * R
        M[..., :3, 3] = t
        M[..., 3, 3] = 1.0
        return M


def _numpy(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else a


def fit_similarity(src, dst, weights=None, *, scale: bool = True, translation: bool = True) -> Similarity:
    """Least-squares similarity (or rigid) transform taking ``src`` onto ``dst``.

    Args:
        src, dst: ``(..., N, 3)`` corresponding points; batch dims broadcast (e.g. one
            ``src (N, 3)`` against ``dst (B, N, 3)``).  numpy or torch (both the same).
        weights: ``(..., N)`` non-negative, broadcastable; None = uniform.  Only their ratios
            matter (they are normalised per batch element).
        scale: fit the uniform scale; False: rigid (``scale = 1``).
        translation: fit ``t``; False: ``t = 0`` (rotation/scale about the origin, e.g. for
            root-relative points).

    Returns:
        :class:`Similarity` ``(R (..., 3, 3), t (..., 3), scale (...))`` with
        ``dst ~= scale * src @ R.T + t`` and ``det R = +1``.

    Degenerate input (all handled without NaN):
        * a batch element whose weights sum to 0: the identity (``R = I``, ``t = 0``, ``scale = 1``);
        * all (weighted) source points coinciding: any ``R``/``scale`` fit equally well; returns
          ``R = I``, ``scale = 1`` and the translation between the centroids;
        * collinear points: the rotation about the line is undetermined; some proper rotation
          that attains the minimum is returned.

    Raises:
        ValueError: shapes that are not ``(..., N, 3)`` with ``N >= 1``, or negative weights.
    """
    if hasattr(src, "detach") or hasattr(dst, "detach"):
        return _fit_torch(src, dst, weights, scale, translation)
    src, dst = np.broadcast_arrays(np.asarray(src, np.float64), np.asarray(dst, np.float64))
    _check_shape(src.shape)
    w, empty = _normalised_weights(None if weights is None else np.asarray(weights, np.float64), src.shape)
    if translation:
        mu_s = np.einsum("...n,...nc->...c", w, src)
        mu_d = np.einsum("...n,...nc->...c", w, dst)
        a, b = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    else:
        mu_s = mu_d = np.zeros(src.shape[:-2] + (3,))
        a, b = src, dst
    H = np.einsum("...n,...ni,...nj->...ij", w, b, a)                  # weighted cov(dst, src)
    U, S, Vt = np.linalg.svd(H)
    D = np.ones(S.shape)
    D[..., 2] = np.where(np.linalg.det(U @ Vt) < 0, -1.0, 1.0)         # no reflection
    R = U @ (D[..., :, None] * Vt)
    spread = np.einsum("...n,...n->...", w, (a * a).sum(-1))
    flat = (spread <= _MIN_SPREAD) | empty
    R = np.where(flat[..., None, None], np.eye(3), R)
    s = np.ones(S.shape[:-1])
    if scale:
        s = np.where(flat, 1.0, (S * D).sum(-1) / np.where(flat, 1.0, spread))
    t = mu_d - s[..., None] * np.einsum("...ij,...j->...i", R, mu_s)
    t = np.where(empty[..., None], 0.0, t)
    return Similarity(R, t, s)


def _check_shape(shape) -> None:
    if len(shape) < 2 or shape[-1] != 3 or shape[-2] < 1:
        raise ValueError(f"fit_similarity: points must be (..., N, 3) with N >= 1, got {tuple(shape)}")


def _normalised_weights(weights, shape):
    """numpy weights ``(..., N)`` summing to 1 (uniform where they sum to 0) and the zero-sum mask."""
    if weights is None:
        return np.full(shape[:-1], 1.0 / shape[-2]), np.zeros(shape[:-2], bool)
    w = np.broadcast_to(weights, shape[:-1])
    if not np.all(w >= 0):
        raise ValueError("fit_similarity: weights must be finite and >= 0")
    total = w.sum(-1)
    empty = total <= 0
    w = np.where(empty[..., None], 1.0 / shape[-2], w / np.where(empty, 1.0, total)[..., None])
    return w, empty


def _fit_torch(src, dst, weights, scale: bool, translation: bool) -> Similarity:
    """torch branch of :func:`fit_similarity` through roma (same convention and degenerate cases)."""
    import roma
    import torch

    like = src if torch.is_tensor(src) else dst
    src, dst = torch.broadcast_tensors(torch.as_tensor(src).to(like), torch.as_tensor(dst).to(like))
    _check_shape(src.shape)
    lead = src.shape[:-2]
    if weights is None:
        w = torch.full(src.shape[:-1], 1.0 / src.shape[-2], dtype=src.dtype, device=src.device)
        empty = torch.zeros(lead, dtype=torch.bool, device=src.device)
    else:
        w = torch.as_tensor(weights).to(src).expand(src.shape[:-1])
        if not bool((w >= 0).all()):
            raise ValueError("fit_similarity: weights must be finite and >= 0")
        total = w.sum(-1, keepdim=True)
        empty = total[..., 0] <= 0
        w = torch.where(total > 0, w / torch.where(total > 0, total, torch.ones_like(total)), 1.0 / src.shape[-2])
    ones = torch.ones(lead, dtype=src.dtype, device=src.device)
    if translation:
        out = roma.rigid_points_registration(src, dst, w, compute_scaling=scale)
        R, t, s = out if scale else (*out, ones)
        mu_s = torch.einsum("...n,...nc->...c", w, src)
        a = src - mu_s[..., None, :]
    else:
        out = roma.rigid_vectors_registration(src, dst, w, compute_scaling=scale)
        R, s = out if scale else (out, ones)
        t = torch.zeros(lead + (3,), dtype=src.dtype, device=src.device)
        a = src
    flat = (torch.einsum("...n,...n->...", w, (a * a).sum(-1)) <= _MIN_SPREAD) | empty
    if bool(flat.any()):
        R = torch.where(flat[..., None, None], torch.eye(3, dtype=src.dtype, device=src.device), R)
        s = torch.where(flat, ones, s)
        if translation:
            t = torch.where(flat[..., None], torch.einsum("...n,...nc->...c", w, dst) - mu_s, t)
        t = torch.where(empty[..., None], torch.zeros_like(t), t)
    return Similarity(R, t, s)
