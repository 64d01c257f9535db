"""Rotation representations and conversions: the single place for rotation maths.

Every function accepts any leading batch shape ``(...)`` and works on torch
tensors (any device, float32/64, differentiable) or numpy arrays.

Conventions (named, never implied):

* **6D** (Zhou et al. 2019): ``(..., 6)`` = the first two *columns* of the 3x3
  rotation matrix, column after column: ``[R00, R10, R20, R01, R11, R21]``.
  This is the layout of ``pose_6d`` in capture files.
* **Matrices** act on column vectors: ``x' = R @ x``.
* **Quaternions** are stored **WXYZ** (scalar first, Blender's order) in
  :func:`matrix_to_quat_wxyz` / :func:`quat_wxyz_to_matrix`.  Conversions to the
  XYZW order used by scipy/roma happen only in :func:`wxyz_to_xyzw` and
  :func:`xyzw_to_wxyz`.
* **Axis-angle** ``(..., 3)``: unit axis times angle in radians (SMPL ``pose``).

Backends: torch tensors go to `roma <https://naver.github.io/roma/>`_ (imported on first
use) wherever roma has the same operation; only the conventions are adapted here (roma's
Gram-Schmidt takes the two columns as a ``(..., 3, 2)`` matrix; its quaternions are XYZW,
converted by :func:`wxyz_to_xyzw` / :func:`xyzw_to_wxyz`).  numpy arrays use the numpy code
below, which needs nothing but numpy (Blender's Python imports this module).
"""
from __future__ import annotations

import numpy as np

from . import backend

__all__ = [
    "rot6d_to_matrix",
    "matrix_to_rot6d",
    "matrix_to_quat_wxyz",
    "quat_wxyz_to_matrix",
    "wxyz_to_xyzw",
    "xyzw_to_wxyz",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "quat_continuity",
    "geodesic_angle",
]


def rot6d_to_matrix(d6):
    """6D ``(..., 6)`` -> rotation matrix ``(..., 3, 3)`` by Gram-Schmidt.

    The first column is the normalised first 3-vector; the second is the second
    3-vector made orthogonal to it; the third is their cross product.
    """
    if backend.is_torch(d6):   # the 6D layout is column-major: (..., 2, 3) rows are the columns
        return _roma().special_gramschmidt(d6.unflatten(-1, (2, 3)).transpose(-1, -2), epsilon=1e-8)
    a1 = d6[..., 0:3]
    a2 = d6[..., 3:6]
    b1 = a1 / backend.clamp_min(backend.norm(a1), 1e-8)
    b2 = a2 - backend.dot(b1, a2) * b1
    b2 = b2 / backend.clamp_min(backend.norm(b2), 1e-8)
    b3 = backend.cross(b1, b2)
    return backend.stack([b1, b2, b3], axis=-1)


def matrix_to_rot6d(R):
    """Rotation matrix ``(..., 3, 3)`` -> 6D ``(..., 6)`` (first two columns, column-major)."""
    return backend.cat([R[..., :, 0], R[..., :, 1]], axis=-1)


def matrix_to_quat_wxyz(R):
    """Rotation matrix ``(..., 3, 3)`` -> unit quaternion ``(..., 4)`` WXYZ, w >= 0.

    Branch-free variant of Shepperd's method: computes all four candidates and
    picks the best-conditioned one per element (no Python loop, batched); torch: roma's
    (Markley's variant of the same method).
    """
    if backend.is_torch(R):
        q = xyzw_to_wxyz(_roma().rotmat_to_unitquat(R))
        return backend.where(q[..., 0:1] < 0, -q, q)
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    # 4*q_i^2 for i = w, x, y, z
    q_abs = backend.sqrt(
        backend.clamp_min(
            backend.stack(
                [
                    1.0 + m00 + m11 + m22,
                    1.0 + m00 - m11 - m22,
                    1.0 - m00 + m11 - m22,
                    1.0 - m00 - m11 + m22,
                ],
                axis=-1,
            ),
            0.0,
        )
    )
    # candidate quaternions, each row scaled by 2*q_i (row i is exact when q_i is largest)
    cands = backend.stack(
        [
            backend.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], axis=-1),
            backend.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], axis=-1),
            backend.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], axis=-1),
            backend.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], axis=-1),
        ],
        axis=-2,
    )
    denom = 2.0 * backend.clamp_min(q_abs, 0.1)
    cands = cands / denom[..., :, None]
    q = np.take_along_axis(cands, q_abs.argmax(axis=-1)[..., None, None], axis=-2)[..., 0, :]
    q = q / backend.clamp_min(backend.norm(q), 1e-12)
    sign = backend.where(q[..., 0:1] < 0, -backend.ones_like(q[..., 0:1]), backend.ones_like(q[..., 0:1]))
    return q * sign


def quat_wxyz_to_matrix(q):
    """Quaternion ``(..., 4)`` WXYZ (need not be unit) -> rotation matrix ``(..., 3, 3)``."""
    q = q / backend.clamp_min(backend.norm(q), 1e-12)
    if backend.is_torch(q):
        return _roma().unitquat_to_rotmat(wxyz_to_xyzw(q))
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        backend.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], axis=-1),
        backend.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], axis=-1),
        backend.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1),
    ]
    return backend.stack(rows, axis=-2)


def wxyz_to_xyzw(q):
    """The one place WXYZ (Blender) becomes XYZW (scipy/roma)."""
    return backend.cat([q[..., 1:4], q[..., 0:1]], axis=-1)


def xyzw_to_wxyz(q):
    """The one place XYZW (scipy/roma) becomes WXYZ (Blender)."""
    return backend.cat([q[..., 3:4], q[..., 0:3]], axis=-1)


def axis_angle_to_matrix(aa):
    """Axis-angle ``(..., 3)`` (radians) -> rotation matrix ``(..., 3, 3)`` (Rodrigues)."""
    if backend.is_torch(aa):
        return _roma().rotvec_to_rotmat(aa)
    angle = backend.norm(aa)  # (..., 1)
    small = angle < 1e-8
    safe = backend.where(small, backend.ones_like(angle), angle)
    axis = aa / safe
    half = 0.5 * angle
    w = backend.cos(half)
    xyz = axis * backend.sin(half)
    # for tiny angles use the first-order quaternion (1, aa/2)
    xyz = backend.where(small, 0.5 * aa, xyz)
    return quat_wxyz_to_matrix(backend.cat([w, xyz], axis=-1))


def matrix_to_axis_angle(R):
    """Rotation matrix ``(..., 3, 3)`` -> axis-angle ``(..., 3)``, angle in [0, pi]."""
    if backend.is_torch(R):
        return _roma().rotmat_to_rotvec(R)
    q = matrix_to_quat_wxyz(R)
    xyz = q[..., 1:4]
    s = backend.norm(xyz)
    angle = 2.0 * backend.atan2(s, q[..., 0:1])
    small = s < 1e-8
    factor = backend.where(small, 2.0 * backend.ones_like(s), angle / backend.where(small, backend.ones_like(s), s))
    return xyz * factor


def quat_continuity(q, axis: int = 0):
    """Flip quaternion signs along ``axis`` (time) so consecutive ones have a positive dot.

    ``q``: ``(..., 4)`` with time along ``axis``; returns the same shape.  The
    flip is cumulative (vectorised with a cumulative product of signs).
    """
    if backend.is_torch(q):
        import torch

        qt = q.movedim(axis, 0)
        dots = (qt[1:] * qt[:-1]).sum(-1, keepdim=True)
        flips = torch.where(dots < 0, -1.0, 1.0).to(q.dtype)
        signs = torch.cat([torch.ones_like(qt[:1, ..., :1]), torch.cumprod(flips, 0)], 0)
        return (qt * signs).movedim(0, axis)
    qt = np.moveaxis(q, axis, 0)
    dots = (qt[1:] * qt[:-1]).sum(-1, keepdims=True)
    flips = np.where(dots < 0, -1.0, 1.0).astype(q.dtype)
    signs = np.concatenate([np.ones_like(qt[:1, ..., :1]), np.cumprod(flips, 0)], 0)
    return np.moveaxis(qt * signs, 0, axis)


def geodesic_angle(Ra, Rb):
    """Angle in radians ``(...)`` of ``Ra^T Rb`` for matrices ``(..., 3, 3)``.

    ``atan2(|sin|, cos)`` from the relative rotation: accurate over the whole range in float32,
    unlike roma's ``rotmat_geodesic_distance`` (arcsine of a chord: ~1e-3 rad off near pi).
    """
    rel = backend.swapaxes_last2(Ra) @ Rb
    tr = rel[..., 0, 0] + rel[..., 1, 1] + rel[..., 2, 2]
    c = backend.clip((tr - 1.0) * 0.5, -1.0, 1.0)
    s = backend.norm(backend.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0], rel[..., 1, 0] - rel[..., 0, 1]], axis=-1), keepdims=False) * 0.5
    return backend.atan2(s, c)


def _roma():
    """roma, for torch tensors only (never imported for numpy: Blender has no torch)."""
    import roma

    return roma
