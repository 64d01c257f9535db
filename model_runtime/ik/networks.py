"""BodyIKNet and HandIKNet (paper Sec. 3.3): fully connected keypoints -> relative 6D rotations.

Inputs (both nets): root-relative keypoints ``kp (B, K, 3)`` and a per-keypoint
confidence ``conf (B, K)`` in [0, 1]; missing keypoints have ``conf = 0`` and
are zeroed before the first layer, so the net sees ``[kp * conf, conf]``
(``4K`` features).

* :class:`BodyIKNet` (K = 24, pelvis-relative, metres): outputs ``rot6d (B, 22, 6)``
  (root = global orientation in the keypoints' frame, others relative to
  their parent), ``betas (B, 16)`` and ``scale (B,)`` (alpha > 0).
* :class:`HandIKNet` (K = 21, wrist-relative, divided by the hand size, right
  hands): outputs ``rot6d (B, 16, 6)``: index 0 is the wrist's *global*
  rotation in the keypoints' frame, 1..15 the SMPL-H finger joints (relative).

* :class:`BodyCorrectionNet` (optional second stage, not in the paper): sees the
  observed keypoints, BodyIKNet's rotations and the keypoints they produce
  (forward kinematics) and returns corrected rotations (:func:`two_stage_body`).

The 6D heads add the identity ``[1,0,0, 0,1,0]`` so an untrained net outputs
the rest pose.  6D is turned into matrices by Gram-Schmidt
(:func:`model_runtime.core.rotations.rot6d_to_matrix`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..core.skeleton import NUM_BETAS, NUM_BODY_JOINTS, NUM_HAND_JOINTS

NUM_BODY_KP = 24
NUM_HAND_KP = 21


@dataclass(frozen=True)
class NetConfig:
    """Architecture of one IK net; stored next to its weights as JSON."""

    part: str                 # "body" or "hand"
    num_keypoints: int
    num_rotations: int
    width: int = 512
    depth: int = 3            # hidden layers
    with_shape: bool = False  # BodyIKNet also predicts betas and scale

    def to_json(self) -> dict:
        return asdict(self)


BODY_CONFIG = NetConfig("body", NUM_BODY_KP, NUM_BODY_JOINTS, width=512, depth=4, with_shape=True)
HAND_CONFIG = NetConfig("hand", NUM_HAND_KP, 1 + NUM_HAND_JOINTS, width=512, depth=3, with_shape=False)
CORRECTION_CONFIG = NetConfig("correction", NUM_BODY_KP, NUM_BODY_JOINTS, width=512, depth=2, with_shape=False)


def _mlp(d_in: int, cfg: NetConfig, n_out: int) -> tuple[nn.Sequential, nn.Linear]:
    """``depth`` hidden layers of ``width`` (SiLU) and a linear head initialised near 0."""
    layers: list[nn.Module] = []
    for _ in range(cfg.depth):
        layers += [nn.Linear(d_in, cfg.width), nn.SiLU()]
        d_in = cfg.width
    head = nn.Linear(d_in, n_out)
    nn.init.zeros_(head.bias)
    with torch.no_grad():
        head.weight.mul_(0.1)
    return nn.Sequential(*layers), head


def root_to_frame(rot6d: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """rot6d ``(B, R, 6)`` with the root (index 0) in a body frame ``(B, 3, 3)`` -> root in the
    keypoints' original frame (``frame @ R_root``, both 6D columns rotated); others unchanged."""
    B = rot6d.shape[0]
    root = frame @ rot6d[:, 0].reshape(B, 2, 3).transpose(1, 2)          # (B, 3, 2)
    return torch.cat([root.transpose(1, 2).reshape(B, 1, 6), rot6d[:, 1:]], 1)


class IKNet(nn.Module):
    """MLP ``[kp*conf, conf] (B, 4K) -> rot6d (B, R, 6)`` (+ ``betas (B, 16)``, ``scale (B,)``)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        n_out = 6 * cfg.num_rotations + (NUM_BETAS + 1 if cfg.with_shape else 0)
        self.trunk, self.head = _mlp(4 * cfg.num_keypoints, cfg, n_out)
        self.register_buffer("identity6d", torch.tensor([1.0, 0, 0, 0, 1.0, 0]), persistent=False)

    def forward(self, kp: torch.Tensor, conf: torch.Tensor, frame: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """kp ``(B, K, 3)``, conf ``(B, K)``, optional frame ``(B, 3, 3)`` the keypoints were
        expressed in (``kp_in = kp @ frame``) -> dict ``rot6d (B, R, 6)`` [, ``betas (B, 16)``,
        ``scale (B,)``]; with a frame, the root rotation is returned in the original frame
        (``frame @ R_root``)."""
        B = kp.shape[0]
        x = torch.cat([(kp * conf[..., None]).reshape(B, -1), conf], dim=1)
        y = self.head(self.trunk(x))
        R = self.cfg.num_rotations
        rot6d = y[:, : 6 * R].reshape(B, R, 6) + self.identity6d
        if frame is not None:
            rot6d = root_to_frame(rot6d, frame)
        out = {"rot6d": rot6d}
        if self.cfg.with_shape:
            out["betas"] = y[:, 6 * R: 6 * R + NUM_BETAS]
            out["scale"] = torch.exp(y[:, 6 * R + NUM_BETAS])
        return out


class BodyCorrectionNet(nn.Module):
    """Second stage after BodyIKNet: ``rot6d_1 (B, 22, 6) -> rot6d_1 + delta``.

    Input (all in the body frame, pelvis-relative, metres): the observed keypoints
    ``kp * conf`` (3K), their residual to the keypoints of BodyIKNet's pose
    ``10 (kp - kp_fk) * conf`` (3K, decimetres), ``conf`` (K) and BodyIKNet's ``rot6d_1`` (6R):
    ``7K + 6R`` features.  The zero-initialised-ish head starts at BodyIKNet's answer.
    """

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        self.trunk, self.head = _mlp(7 * cfg.num_keypoints + 6 * cfg.num_rotations, cfg, 6 * cfg.num_rotations)

    def forward(self, kp: torch.Tensor, conf: torch.Tensor, kp_fk: torch.Tensor, rot6d: torch.Tensor) -> torch.Tensor:
        """kp, kp_fk ``(B, K, 3)``, conf ``(B, K)``, rot6d ``(B, R, 6)`` -> corrected rot6d ``(B, R, 6)``."""
        B = kp.shape[0]
        w = conf[..., None]
        x = torch.cat([(kp * w).reshape(B, -1), (10.0 * (kp - kp_fk) * w).reshape(B, -1), conf, rot6d.reshape(B, -1)], 1)
        return rot6d + self.head(self.trunk(x)).reshape(rot6d.shape)


def two_stage_body(first: IKNet, second: BodyCorrectionNet, kin, kp: torch.Tensor, conf: torch.Tensor,
                   frame: torch.Tensor) -> dict[str, torch.Tensor]:
    """BodyIKNet then BodyCorrectionNet.  kp ``(B, 24, 3)`` / conf ``(B, 24)`` / frame ``(B, 3, 3)``
    from :func:`.inputs.body_input`; ``kin`` the body :class:`~model_runtime.models.keypoints.PartKinematics`.
    Returns the dict of :meth:`IKNet.forward` (root in the keypoints' original frame)."""
    from ..core.rotations import rot6d_to_matrix

    out = first(kp, conf)                                   # root in the body frame
    _, kp_fk = kin(rot6d_to_matrix(out["rot6d"]), out["betas"], out["scale"])
    return {**out, "rot6d": root_to_frame(second(kp, conf, kp_fk, out["rot6d"]), frame)}


def BodyIKNet() -> IKNet:  # noqa: N802 - the paper's name
    return IKNet(BODY_CONFIG)


def HandIKNet() -> IKNet:  # noqa: N802
    return IKNet(HAND_CONFIG)


def build(cfg: NetConfig | dict) -> IKNet | BodyCorrectionNet:
    cfg = cfg if isinstance(cfg, NetConfig) else NetConfig(**cfg)
    return BodyCorrectionNet(cfg) if cfg.part == "correction" else IKNet(cfg)
