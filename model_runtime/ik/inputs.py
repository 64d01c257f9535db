"""Input normalisation shared by training and inference (so both see the same numbers).

* body: keypoints ``(B, 24, 3)`` made pelvis-relative (mid-hips when the pelvis
  is missing), missing ones (``conf == 0``) zeroed;
* hand: keypoints ``(B, 21, 3)`` made wrist-relative and divided by the hand
  size (mean wrist -> index1/middle1/ring1/pinky1 distance over the present
  ones), so HandIKNet is blind to the detector's metric scale (MediaPipe world
  landmarks are ~22 % larger than real hands);
* left hands are mirrored to right hands by negating x: ``M = diag(-1, 1, 1)``.
  Keypoints: ``kp_R = kp_L @ M``; rotations back: ``R_L = M @ R_R @ M``
  (exact for SMPL-H, whose left-hand rest skeleton mirrors the right one).
"""
from __future__ import annotations

import torch

from ..core.skeleton import BODY_KEYPOINT_NAMES, HAND21_NAMES

_B = {n: i for i, n in enumerate(BODY_KEYPOINT_NAMES)}
PELVIS, NECK = _B["pelvis"], _B["neck"]
HIPS = [_B["left_hip"], _B["right_hip"]]
SHOULDERS = [_B["left_shoulder"], _B["right_shoulder"]]
HAND_MCP = [HAND21_NAMES.index(n) for n in ("index1", "middle1", "ring1", "pinky1")]
MIRROR = torch.tensor([-1.0, 1.0, 1.0])


def body_input(kp: torch.Tensor, conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """kp ``(B, 24, 3)``, conf ``(B, 24)`` -> (kp, conf, frame ``(B, 3, 3)``).

    The keypoints are made pelvis-relative, missing ones zeroed, and expressed
    in the body frame of :func:`body_frame` (``kp @ frame``), so the net never
    has to undo the global orientation; it predicts the root rotation in that
    frame and :class:`~.networks.IKNet` composes ``frame @ R_root``.
    """
    conf = conf.clamp(0.0, 1.0)
    has_pelvis = conf[:, PELVIS] > 0
    hips = kp[:, HIPS].mean(1)
    root = torch.where(has_pelvis[:, None], kp[:, PELVIS], hips)
    rel = (kp - root[:, None]) * (conf > 0)[..., None]
    frame = body_frame(rel, conf)
    return rel @ frame, conf, frame


def body_frame(rel: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """Body-aligned orthonormal frame ``(B, 3, 3)`` (columns x, y, z) from pelvis-relative keypoints.

    x: right hip -> left hip (else right -> left shoulder, else +x); y: pelvis ->
    neck (else hips -> shoulders midpoint, else +y), made orthogonal to x; z = x cross y.
    """
    ok = conf > 0
    ex = torch.tensor([1.0, 0.0, 0.0], dtype=rel.dtype, device=rel.device).expand(rel.shape[0], 3)
    ey = torch.tensor([0.0, 1.0, 0.0], dtype=rel.dtype, device=rel.device).expand(rel.shape[0], 3)
    has_hips = ok[:, HIPS].all(1, keepdim=True)
    has_sh = ok[:, SHOULDERS].all(1, keepdim=True)
    x = torch.where(has_hips, rel[:, HIPS[0]] - rel[:, HIPS[1]],
                    torch.where(has_sh, rel[:, SHOULDERS[0]] - rel[:, SHOULDERS[1]], ex))
    up_pair = rel[:, SHOULDERS].mean(1) - rel[:, HIPS].mean(1)
    y = torch.where(ok[:, NECK:NECK + 1], rel[:, NECK], torch.where(has_sh & has_hips, up_pair, ey))
    x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    y = y - (x * y).sum(-1, keepdim=True) * x
    n = y.norm(dim=-1, keepdim=True)
    y = torch.where(n > 1e-6, y / n.clamp_min(1e-8), torch.linalg.cross(torch.tensor([0.0, 0.0, 1.0]).to(x).expand_as(x), x, dim=-1))
    y = y / y.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return torch.stack([x, y, torch.linalg.cross(x, y, dim=-1)], dim=-1)


def hand_input(kp: torch.Tensor, conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """kp ``(B, 21, 3)``, conf ``(B, 21)`` -> (wrist-relative kp / size, conf, size ``(B,)``).

    A hand without a wrist or without any MCP gets ``conf = 0`` everywhere (the
    net then returns its prior pose) and size 1.
    """
    conf = conf.clamp(0.0, 1.0)
    rel = kp - kp[:, :1]
    present = (conf[:, HAND_MCP] > 0).to(kp.dtype)
    dist = rel[:, HAND_MCP].norm(dim=-1)
    n = present.sum(1)
    usable = (n > 0) & (conf[:, 0] > 0)
    size = torch.where(usable, (dist * present).sum(1) / n.clamp_min(1), torch.ones_like(n)).clamp_min(1e-4)
    conf = conf * usable[:, None]
    rel = rel / size[:, None, None] * (conf > 0)[..., None]
    return rel, conf, size


def mirror_points(kp: torch.Tensor) -> torch.Tensor:
    """Negate x: ``(..., 3)``."""
    return kp * MIRROR.to(kp)


def mirror_rotations(R: torch.Tensor) -> torch.Tensor:
    """``M @ R @ M`` for ``(..., 3, 3)`` (elementwise sign flips, no matmul)."""
    s = MIRROR.to(R)
    return R * s[:, None] * s[None, :]
