"""Forward kinematics of a source MoCap skeleton (ASF/AMC or BVH), numpy, vectorised.

A source skeleton is a tree of ``N`` nodes in topological order.  Each frame
gives every node a *local* rotation ``L (F, N, 3, 3)``; node ``n`` has a
translation ``t_n`` from its parent.  Two conventions exist and both are here:

* BVH: the parent's frame places the child, ``p_n = p_par + G_par @ t_n`` and
  ``G_n = G_par @ L_n`` (``t`` per frame: position channels or the OFFSET);
* ASF/AMC: a bone's *own* rotation orients the bone it spans,
  ``G_n = G_par @ L_n`` and ``p_n = p_par + G_n @ t_n`` (``p_n`` is the bone's end).

The loop runs over tree depth levels (like :func:`model_runtime.core.lbs.forward_kinematics`),
each level vectorised over its nodes and all frames.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..core.skeleton import depth_levels


def euler_to_matrix(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles ``(..., len(order))`` in degrees -> ``(..., 3, 3)`` float64.

    ``order`` names the axes in the order they are *composed left to right*,
    e.g. ``"ZXY"`` gives ``Rz @ Rx @ Ry`` (the BVH channel convention).  An
    ASF ``axis XYZ`` / AMC ``rx ry rz`` rotation is ``Rz @ Ry @ Rx``, i.e.
    ``order="ZYX"`` with the angles given in z, y, x order.  This is scipy's
    intrinsic (upper-case) sequence: :meth:`scipy.spatial.transform.Rotation.from_euler`.
    """
    a = np.asarray(angles_deg, dtype=np.float64)
    flat = a.reshape(-1, a.shape[-1])
    return Rotation.from_euler(order.upper(), flat, degrees=True).as_matrix().reshape(a.shape[:-1] + (3, 3))


def skeleton_fk(local_rot: np.ndarray, trans: np.ndarray, parents: np.ndarray, root_pos: np.ndarray,
                offset_in_own_frame: bool) -> np.ndarray:
    """Global node positions ``(F, N, 3)``.

    local_rot ``(F, N, 3, 3)``; trans ``(N, 3)`` or ``(F, N, 3)`` node
    translations from the parent (ignored for roots); parents ``(N,)`` with
    ``-1`` for the root; root_pos ``(F, 3)`` root positions;
    ``offset_in_own_frame``: ASF convention (True) or BVH (False), see module doc.
    """
    F, N = local_rot.shape[:2]
    trans = np.broadcast_to(trans, (F, N, 3))
    G = np.empty_like(local_rot)
    P = np.empty((F, N, 3), dtype=local_rot.dtype)
    levels = depth_levels(parents)
    G[:, levels[0]] = local_rot[:, levels[0]]
    P[:, levels[0]] = root_pos[:, None]
    for lvl in levels[1:]:
        par = parents[lvl]
        G[:, lvl] = G[:, par] @ local_rot[:, lvl]
        frame = G[:, lvl] if offset_in_own_frame else G[:, par]
        P[:, lvl] = P[:, par] + (frame @ trans[:, lvl, :, None])[..., 0]
    return P
