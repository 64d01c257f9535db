"""Body and hand poses for the synthetic people.

* Body: real motion capture (HDM05 + Bandai Namco in ``<data>/mocap``) retargeted to the
  SMPL-H body once and cached by :mod:`model_runtime.mocap.retarget` (the same cache the IK
  training uses), every :data:`BANK_STRIDE`-th frame; the ``heldout`` split is HDM05 actor dg
  (the IK evaluation split), used by the evaluation set.  ``random``: per-joint rotations
  inside loose limits (no data needed; tests).
* Hands: anatomically limited random finger poses (:func:`model_runtime.ik.hand_prior.sample_limited_poses`),
  the left hand mirrored from a right-hand draw.
"""
from __future__ import annotations

from typing import Final

import numpy as np
import torch

from ..core.rotations import axis_angle_to_matrix

#: keep every k-th retargeted frame (clips are already at 15-30 fps; neighbours are near copies)
BANK_STRIDE: Final[int] = 3
#: per body joint (22) standard deviation (rad) of the ``random`` pose source
_RANDOM_STD: Final[tuple[float, ...]] = (
    0.15, 0.5, 0.5, 0.2, 0.6, 0.6, 0.15, 0.2, 0.2, 0.15, 0.1, 0.1, 0.25,
    0.15, 0.15, 0.3, 0.6, 0.6, 0.6, 0.6, 0.4, 0.4)
_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
_BANKS: dict = {}
_HAND_AXES: dict = {}


def pose_bank(body_model, data_root, split: str, sets: tuple[str, ...] = ("hdm05", "bandai_namco"),
              log=None) -> torch.Tensor:
    """Retargeted body rotations ``(P, 22, 3, 3)`` (cached in memory and on disk).

    ``split``: ``"train"`` or ``"heldout"`` (see :func:`model_runtime.ik.data.mocap_clip_paths`);
    ``sets``: MoCap folders to keep (``hdm05``, ``bandai_namco``);
    raises :class:`~model_runtime.core.errors.InputMissingError` naming the folder when the
    MoCap data is missing.
    """
    from ..ik.data import load_body_poses, mocap_clip_paths
    from ..models.keypoints import PartKinematics

    from pathlib import Path

    from ..core.errors import InputMissingError

    key = (str(data_root), split, tuple(sets), body_model.source)
    if key not in _BANKS:
        kin = PartKinematics(body_model, "body")
        root = Path(data_root) / "mocap"
        paths = [p for p in mocap_clip_paths(data_root, split) if p.relative_to(root).parts[0] in sets]
        if not paths:
            raise InputMissingError(f"{root}: no MoCap clips of {', '.join(sets)} for the {split} split")
        rot = load_body_poses(kin, paths, log=log)
        _BANKS[key] = rot[::BANK_STRIDE].contiguous().float()
    return _BANKS[key]


def save_pose_bank(path, rot: torch.Tensor) -> None:
    """Write body rotations ``rot (P, 22, 3, 3)`` (a :func:`pose_bank`) to ``path`` (``.npz``: ``rot6d
    (P, 22, 6)`` float16, the first two columns, ~13 MB for 50,000 poses), for a machine without the
    MoCap data (:func:`load_pose_bank`; ``SynthConfig.pose_bank``)."""
    from ..core.rotations import matrix_to_rot6d

    r6 = matrix_to_rot6d(np.asarray(rot, np.float64)).astype(np.float16)
    np.savez_compressed(path, rot6d=r6)


def load_pose_bank(path) -> torch.Tensor:
    """The body rotations ``(P, 22, 3, 3)`` of a :func:`save_pose_bank` file (numpy and torch only);
    raises :class:`~model_runtime.core.errors.ModelFileError` naming the file and field when it is
    missing or malformed."""
    from pathlib import Path

    from ..core.errors import ModelFileError
    from ..core.rotations import rot6d_to_matrix
    from ..core.safe_npz import load_npz

    data = load_npz(Path(path), ["rot6d"], what="pose bank (.npz)")
    r6 = data["rot6d"]
    if r6.ndim != 3 or r6.shape[1:] != (22, 6) or len(r6) == 0 or not np.isfinite(r6.astype(np.float32)).all():
        raise ModelFileError(str(path), "rot6d", f"has shape {r6.shape}, expected (P, 22, 6) finite, P > 0")
    return torch.from_numpy(rot6d_to_matrix(r6.astype(np.float64))).float()


def random_body_pose(gen: torch.Generator) -> torch.Tensor:
    """One body pose ``(22, 3, 3)`` from per-joint Gaussian axis-angles (``random`` source)."""
    std = torch.tensor(_RANDOM_STD)[:, None]
    aa = torch.randn(22, 3, generator=gen) * std
    aa[0] = 0.0
    return axis_angle_to_matrix(aa)


def hand_axes(body_model) -> torch.Tensor:
    """Anatomical axes ``(15, 3, 3)`` of the right hand (cached per model)."""
    from ..ik.hand_prior import anatomical_axes
    from ..models.keypoints import PartKinematics

    key = body_model.source
    if key not in _HAND_AXES:
        _HAND_AXES[key] = anatomical_axes(PartKinematics(body_model, "hand"))
    return _HAND_AXES[key]


def random_hand_pair(axes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Finger rotations of both hands ``(2, 15, 3, 3)`` [left, right], anatomically limited;
    the left is the mirror image (``M R M``, ``M = diag(-1, 1, 1)``) of an independent right-hand draw."""
    from ..ik.hand_prior import sample_limited_poses

    r = sample_limited_poses(2, axes, gen)                        # two right hands
    left = _MIRROR @ r[0] @ _MIRROR
    return torch.stack([left, r[1]])


def random_wrists(gen: torch.Generator, max_angle: float = 0.6) -> torch.Tensor:
    """Extra wrist rotations ``(2, 3, 3)`` (uniform axis, angle up to ``max_angle`` rad) on top
    of the mocap wrists, which carry little hand motion."""
    axis = torch.randn(2, 3, generator=gen)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    return axis_angle_to_matrix(axis * (max_angle * torch.rand(2, 1, generator=gen)))
