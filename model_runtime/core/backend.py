"""Array-backend shim: lets the pure math run on torch tensors *or* numpy arrays.

The runtime uses torch (CPU/CUDA, float32/64); the Blender side only has numpy.
Functions in :mod:`rotations` and :mod:`lbs` call these helpers instead of
``torch.*``/``np.*`` directly, so one implementation serves both.  torch is
imported lazily: importing this module never requires torch.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def is_torch(x: Any) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch")


# numpy: np.cross and np.linalg.norm cost ~10 and ~4 us per call on tiny arrays; the same
# arithmetic written out costs ~1-2 us (the batch-1 IK, :mod:`model_runtime.ik.numpy_path`)
_I1, _I2 = [1, 2, 0], [2, 0, 1]


def cross(a, b):
    """``a x b`` over the last axis ``(..., 3)``."""
    if is_torch(a):
        import torch

        return torch.linalg.cross(a, b, dim=-1)
    return a[..., _I1] * b[..., _I2] - a[..., _I2] * b[..., _I1]


def norm(a, keepdims: bool = True):
    """Euclidean norm over the last axis."""
    if is_torch(a):
        return a.norm(dim=-1, keepdim=keepdims)
    return np.sqrt((a * a).sum(-1, keepdims=keepdims))


def stack(xs, axis: int):
    if is_torch(xs[0]):
        import torch

        return torch.stack(list(xs), dim=axis)
    return np.stack(xs, axis=axis)


def cat(xs, axis: int):
    if is_torch(xs[0]):
        import torch

        return torch.cat(list(xs), dim=axis)
    return np.concatenate(xs, axis=axis)


def dot(a, b):
    """Dot product over the last axis, keeping it: ``(..., n) x (..., n) -> (..., 1)``."""
    if is_torch(a):
        return (a * b).sum(-1, keepdim=True)
    return (a * b).sum(-1, keepdims=True)


def clamp_min(x, lo: float):
    if is_torch(x):
        return x.clamp_min(lo)
    return np.maximum(x, lo)


def clip(x, lo: float, hi: float):
    if is_torch(x):
        return x.clamp(lo, hi)
    return np.clip(x, lo, hi)


def sqrt(x):
    if is_torch(x):
        return x.sqrt()
    return np.sqrt(x)


def where(c, a, b):
    if is_torch(c):
        import torch

        return torch.where(c, a, b)
    return np.where(c, a, b)


def atan2(y, x):
    if is_torch(y):
        import torch

        return torch.atan2(y, x)
    return np.arctan2(y, x)


def sin(x):
    return x.sin() if is_torch(x) else np.sin(x)


def cos(x):
    return x.cos() if is_torch(x) else np.cos(x)


def zeros_like(x, shape=None):
    if is_torch(x):
        import torch

        return torch.zeros(x.shape if shape is None else shape, dtype=x.dtype, device=x.device)
    return np.zeros(x.shape if shape is None else shape, dtype=x.dtype)


def ones_like(x, shape=None):
    if is_torch(x):
        import torch

        return torch.ones(x.shape if shape is None else shape, dtype=x.dtype, device=x.device)
    return np.ones(x.shape if shape is None else shape, dtype=x.dtype)


def eye_like(x, n: int, batch_shape=()):
    """Identity matrices of shape ``(*batch_shape, n, n)`` with x's dtype/device."""
    if is_torch(x):
        import torch

        e = torch.eye(n, dtype=x.dtype, device=x.device)
        return e.expand(*batch_shape, n, n).clone()
    e = np.eye(n, dtype=x.dtype)
    return np.broadcast_to(e, (*batch_shape, n, n)).copy()


def swapaxes_last2(x):
    return x.transpose(-1, -2) if is_torch(x) else np.swapaxes(x, -1, -2)


def einsum(spec: str, *ops):
    if is_torch(ops[0]):
        import torch

        return torch.einsum(spec, *ops)
    return np.einsum(spec, *ops, optimize=True)


def asarray_like(value, like):
    """Convert ``value`` (numpy or torch) to the backend, dtype and device of ``like``."""
    if is_torch(like):
        import torch

        if is_torch(value):
            return value.to(dtype=like.dtype if value.is_floating_point() else value.dtype, device=like.device)
        arr = np.asarray(value)
        t = torch.from_numpy(np.ascontiguousarray(arr))
        if t.is_floating_point():
            t = t.to(like.dtype)
        return t.to(like.device)
    if is_torch(value):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    return arr.astype(like.dtype) if np.issubdtype(arr.dtype, np.floating) else arr
