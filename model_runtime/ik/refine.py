"""Analytic swing refinement of BodyIKNet's limbs (optional post-process, on by default in IKSolver).

The network gets the pose prior right (twists, unobserved joints, missing
keypoints) but its limb directions are a few degrees off.  For each of the
four limbs, three bones in a row are rotated by the smallest rotation
("swing") that points the bone's end at the observed keypoint, keeping the
network's twist:

* legs: hip -> knee, knee -> ankle, ankle -> big toe;
* arms: collar -> shoulder, shoulder -> elbow, elbow -> wrist.

One forward kinematics gives the joint positions and global rotations; the
swings are then propagated down each chain analytically (a swing ``D`` about
joint ``p`` moves every point below to ``p + D (x - p)`` and premultiplies every
global rotation below by ``D``), vectorised over batch and limbs.  A bone is
only corrected when its target keypoint is present (``conf > 0``).
"""
from __future__ import annotations

import torch

from ..models.keypoints import PartKinematics
from ..core.skeleton import BODY_JOINT_NAMES, BODY_KEYPOINT_NAMES, PARENTS

_J = {n: i for i, n in enumerate(BODY_JOINT_NAMES)}
_K = {n: i for i, n in enumerate(BODY_KEYPOINT_NAMES)}
_CHAINS = [  # (three joints rotated, keypoint at the chain's tip, three target keypoints)
    (("left_hip", "left_knee", "left_ankle"), "left_big_toe", ("left_knee", "left_ankle", "left_big_toe")),
    (("right_hip", "right_knee", "right_ankle"), "right_big_toe", ("right_knee", "right_ankle", "right_big_toe")),
    (("left_collar", "left_shoulder", "left_elbow"), "left_wrist", ("left_shoulder", "left_elbow", "left_wrist")),
    (("right_collar", "right_shoulder", "right_elbow"), "right_wrist", ("right_shoulder", "right_elbow", "right_wrist")),
]
_JOINTS = torch.tensor([[_J[n] for n in c[0]] for c in _CHAINS])                # (4, 3)
_TIP = torch.tensor([_K[c[1]] for c in _CHAINS])                                # (4,)
_TARGET = torch.tensor([[_K[n] for n in c[2]] for c in _CHAINS])               # (4, 3)
_PARENT0 = torch.tensor([int(PARENTS[_J[c[0][0]]]) for c in _CHAINS])          # (4,)


def _swing(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotations ``(..., 3, 3)`` taking directions ``a`` to ``b`` (``(..., 3)``), Rodrigues."""
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    v = torch.linalg.cross(a, b, dim=-1)
    c = (a * b).sum(-1)[..., None, None]
    z = torch.zeros_like(v[..., 0])
    K = torch.stack([z, -v[..., 2], v[..., 1], v[..., 2], z, -v[..., 0], -v[..., 1], v[..., 0], z], -1)
    K = K.reshape(v.shape[:-1] + (3, 3))
    return torch.eye(3, dtype=a.dtype, device=a.device) + K + K @ K / (1.0 + c).clamp_min(1e-4)


def refine_limbs(kin: PartKinematics, R: torch.Tensor, betas: torch.Tensor, scale: torch.Tensor,
                 kp: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """R ``(B, 22, 3, 3)`` relative rotations (root in the keypoints' frame); betas ``(B, 16)``;
    scale ``(B,)``; kp ``(B, 24, 3)`` observed keypoints, pelvis-relative, same frame;
    conf ``(B, 24)``.  Returns refined relative rotations ``(B, 22, 3, 3)``."""
    joints, kps, G = kin(R, betas, scale, with_globals=True)
    P = torch.cat([joints[:, _JOINTS], kps[:, _TIP, None]], 2)                   # (B, 4, 4, 3)
    Gc = G[:, _JOINTS]                                                           # (B, 4, 3, 3)
    target = kp[:, _TARGET]                                                      # (B, 4, 3, 3)
    ok = (conf[:, _TARGET] > 0)[..., None, None]                                 # (B, 4, 3, 1, 1)
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    for k in range(3):  # three bones down each chain (not a loop over joints of the body)
        p = P[:, :, k:k + 1]
        D = torch.where(ok[:, :, k], _swing(P[:, :, k + 1] - P[:, :, k], target[:, :, k] - P[:, :, k]), eye)
        P = torch.cat([P[:, :, :k + 1], p + torch.einsum("blij,blnj->blni", D, P[:, :, k + 1:] - p)], 2)
        Gc = torch.cat([Gc[:, :, :k], D[:, :, None] @ Gc[:, :, k:]], 2)
    parent = torch.cat([G[:, _PARENT0, None], Gc[:, :, :2]], 2)                   # (B, 4, 3, 3, 3)
    R = R.clone()
    R[:, _JOINTS] = parent.transpose(-1, -2) @ Gc
    return R
