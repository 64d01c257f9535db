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

from ..skeleton import BODY_KEYPOINT_NAMES, HAND21_NAMES

PELVIS = BODY_KEYPOINT_NAMES.index("pelvis")
HIPS = [BODY_KEYPOINT_NAMES.index("left_hip"), BODY_KEYPOINT_NAMES.index("right_hip")]
HAND_MCP = [HAND21_NAMES.index(n) for n in ("index1", "middle1", "ring1", "pinky1")]
MIRROR = torch.tensor([-1.0, 1.0, 1.0])


def body_input(kp: torch.Tensor, conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """kp ``(B, 24, 3)``, conf ``(B, 24)`` -> (pelvis-relative kp with missing ones zeroed, conf)."""
    conf = conf.clamp(0.0, 1.0)
    has_pelvis = conf[:, PELVIS] > 0
    hips = kp[:, HIPS].mean(1)
    root = torch.where(has_pelvis[:, None], kp[:, PELVIS], hips)
    rel = (kp - root[:, None]) * (conf > 0)[..., None]
    return rel, conf


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
