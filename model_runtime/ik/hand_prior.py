"""The hand pose prior HandIKNet is trained on (no finger MoCap exists here).

It is made of two parts:

1. **Real hand poses**: the 3D ground truth of the hand-graph-cnn real-world
   test set (``realdata/hand-graph-cnn/.../pose_gt.mat``, one subject, 21
   keypoints in camera centimetres, left-hand chirality in camera space).  We
   mirror x (-> right hand), convert to metres and fit the SMPL-H right hand
   (wrist global rotation + 15 finger rotations + a per-frame scale) to each
   frame by optimisation (cached like the body retargeting).
2. **Poses sampled inside per-joint anatomical limits** (:data:`LIMITS_DEG`):
   each finger joint rotates about its own anatomical axes, built from the
   rest skeleton: *twist* = the bone direction, *abduction* = the palm normal,
   *flexion* = twist x palm normal (positive curls toward the palm).  A
   per-hand "grip" level correlates the curl of the five fingers (fists, open
   hands, pointing, pinches all occur), spread shrinks as fingers curl.

The wrist's global rotation is uniform on SO(3) in both parts (hands appear in
any orientation).  Training mixes part 1 (with 5 deg joint jitter) and part 2.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputMissingError
from ..models.keypoints import PartKinematics
from ..core.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix
from ..core.skeleton import HAND21_NAMES, HAND_JOINT_SUFFIXES
from ..geometry import alignment

HGC_POSE_FILE = Path("realdata/hand-graph-cnn/data/real_world_testset/pose_gt.mat")

# (flexion lo, hi), (abduction lo, hi), (twist lo, hi) in degrees, per joint
# level (1 = MCP / thumb CMC, 2 = PIP / thumb MCP, 3 = DIP / thumb IP).
# Ranges follow standard active ranges of motion (e.g. AAOS tables; MCP flexion
# 0-90, PIP 0-110, DIP 0-80, MCP hyperextension to -20 / -30 on the thumb IP).
LIMITS_DEG: dict[str, dict[int, tuple[tuple[float, float], ...]]] = {
    "finger": {1: ((-20, 90), (-20, 20), (-5, 5)), 2: ((0, 110), (-3, 3), (-3, 3)), 3: ((-5, 80), (-2, 2), (-2, 2))},
    "thumb": {1: ((-20, 50), (-25, 40), (-30, 30)), 2: ((-10, 60), (-5, 5), (-5, 5)), 3: ((-20, 80), (-3, 3), (-3, 3))},
}


def anatomical_axes(kin: PartKinematics) -> torch.Tensor:
    """Per finger joint ``(15, 3, 3)`` rows = (flexion, abduction, twist) unit axes,
    in the rest frame (the frame of SMPL-H relative rotations), from the
    right-hand rest skeleton of ``kin`` (``part="hand"``, beta = 0)."""
    joints, kps = kin(torch.eye(3).expand(1, kin.num_joints, 3, 3), torch.zeros(1, 16))
    joints, kps = joints[0], kps[0]
    name = {n: i for i, n in enumerate(HAND21_NAMES)}
    normal = torch.linalg.cross(kps[name["index1"]] - kps[0], kps[name["pinky1"]] - kps[0], dim=-1)
    normal = normal / normal.norm()
    axes = []
    for suffix in HAND_JOINT_SUFFIXES:  # SMPL-H order: index, middle, pinky, ring, thumb x (1, 2, 3)
        finger, level = suffix[:-1], int(suffix[-1])
        twist = kps[name[f"{finger}{level + 1}"]] - kps[name[f"{finger}{level}"]]
        twist = twist / twist.norm()
        flex = torch.linalg.cross(twist, normal, dim=-1)
        flex = flex / flex.norm()
        abd = torch.linalg.cross(flex, twist, dim=-1)
        axes.append(torch.stack([flex, abd, twist]))
    return torch.stack(axes)


def _limits_tensor() -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = [], []
    for suffix in HAND_JOINT_SUFFIXES:
        kind = "thumb" if suffix.startswith("thumb") else "finger"
        lim = LIMITS_DEG[kind][int(suffix[-1])]
        lo.append([r[0] for r in lim])
        hi.append([r[1] for r in lim])
    return torch.deg2rad(torch.tensor(lo)), torch.deg2rad(torch.tensor(hi))  # (15, 3) each


def sample_limited_poses(n: int, axes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``n`` finger poses ``(n, 15, 3, 3)`` inside :data:`LIMITS_DEG` (see module doc)."""
    lo, hi = _limits_tensor()
    finger_of_joint = torch.tensor([HAND_JOINT_SUFFIXES.index(s) // 3 for s in HAND_JOINT_SUFFIXES])
    grip = torch.rand(n, 1, generator=gen)
    curl = (grip + 0.3 * torch.randn(n, 5, generator=gen)).clamp(0, 1)
    independent = torch.rand(n, 1, generator=gen) < 0.3
    curl = torch.where(independent, torch.rand(n, 5, generator=gen), curl)[:, finger_of_joint]  # (n, 15)
    u = torch.rand(n, 15, 3, generator=gen)
    ang = lo + u * (hi - lo)
    flex = lo[:, 0] + curl * (hi[:, 0] - lo[:, 0]) + torch.deg2rad(torch.tensor(5.0)) * torch.randn(n, 15, generator=gen)
    ang[..., 0] = torch.minimum(torch.maximum(flex, lo[:, 0]), hi[:, 0])
    ang[..., 1] = ang[..., 1] * (1 - 0.7 * curl)
    aa = torch.einsum("nja,jad->njd", ang, axes)
    return axis_angle_to_matrix(aa)


def random_rotations(n: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform random rotations ``(n, 3, 3)`` (normalised Gaussian quaternions)."""
    from ..core.rotations import quat_wxyz_to_matrix

    q = torch.randn(n, 4, generator=gen)
    return quat_wxyz_to_matrix(q / q.norm(dim=-1, keepdim=True))


def load_hgc_hands(data_root: Path) -> np.ndarray:
    """hand-graph-cnn GT as right hands: ``(N, 21, 3)`` metres, wrist-relative, HAND21 order."""
    import scipy.io as sio

    path = Path(data_root) / HGC_POSE_FILE
    if not path.is_file():
        raise InputMissingError(f"{path}: hand-graph-cnn pose_gt.mat not found")
    kp = sio.loadmat(str(path))["pose_gt"].astype(np.float64) / 100.0  # cm -> m
    kp = kp - kp[:, :1]
    kp[..., 0] *= -1.0  # left-hand chirality in camera space -> right hand
    return kp.astype(np.float32)


def fit_hand_poses(kp: np.ndarray, kin: PartKinematics, iters: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Fit the right-hand skeleton to wrist-relative keypoints ``(N, 21, 3)``.

    Solves ``rot6d (N, 16, 6)`` (wrist global + 15 finger joints) and a scale per
    frame with Adam; a weak pull to the rest pose fixes finger twist.  Returns
    ``(rot6d, fit error per frame in mm (N,))``.
    """
    target = torch.as_tensor(kp)
    N = target.shape[0]
    betas = torch.zeros(N, 16)
    rest_j, rest_kp = kin(torch.eye(3).expand(N, kin.num_joints, 3, 3), betas)
    palm = [HAND21_NAMES.index(n) for n in ("index1", "middle1", "ring1", "pinky1", "thumb1")]
    size = lambda k: k[:, palm[:4]].norm(dim=-1).mean(1)  # noqa: E731
    scale0 = size(target) / size(rest_kp)
    R0 = alignment.fit_similarity(rest_kp[:, palm] * scale0[:, None, None], target[:, palm],
                                  scale=False, translation=False).R            # Kabsch about the wrist
    rot = torch.cat([R0[:, None], torch.eye(3).expand(N, 15, 3, 3)], 1)
    rot6d = matrix_to_rot6d(rot).clone().requires_grad_(True)
    log_s = scale0.log().clone().requires_grad_(True)
    opt = torch.optim.Adam([rot6d, log_s], lr=0.02)
    eye = torch.eye(3)
    with torch.enable_grad():
        for _ in range(iters):
            opt.zero_grad(set_to_none=True)
            Rm = rot6d_to_matrix(rot6d)
            _, k = kin(Rm, betas, log_s.exp())
            loss = ((k - target) ** 2).sum(-1).mean() + 1e-5 * ((Rm[:, 1:] - eye) ** 2).sum((-1, -2)).mean()
            loss.backward()
            opt.step()
    with torch.no_grad():
        Rm = rot6d_to_matrix(rot6d)
        _, k = kin(Rm, betas, log_s.exp())
        err = 1000 * (k - target).norm(dim=-1).mean(1)
    return matrix_to_rot6d(Rm).detach().numpy(), err.numpy()
