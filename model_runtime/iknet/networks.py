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

The 6D heads add the identity ``[1,0,0, 0,1,0]`` so an untrained net outputs
the rest pose.  6D is turned into matrices by Gram-Schmidt
(:func:`model_runtime.rotations.rot6d_to_matrix`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..skeleton import NUM_BETAS, NUM_BODY_JOINTS, NUM_HAND_JOINTS

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


class IKNet(nn.Module):
    """MLP ``[kp*conf, conf] (B, 4K) -> rot6d (B, R, 6)`` (+ ``betas (B, 16)``, ``scale (B,)``)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        d = 4 * cfg.num_keypoints
        for _ in range(cfg.depth):
            layers += [nn.Linear(d, cfg.width), nn.SiLU()]
            d = cfg.width
        self.trunk = nn.Sequential(*layers)
        n_out = 6 * cfg.num_rotations + (NUM_BETAS + 1 if cfg.with_shape else 0)
        self.head = nn.Linear(d, n_out)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
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
            root = frame @ rot6d[:, 0].reshape(B, 2, 3).transpose(1, 2)      # (B, 3, 2): rotate both columns
            rot6d = torch.cat([root.transpose(1, 2).reshape(B, 1, 6), rot6d[:, 1:]], 1)
        out = {"rot6d": rot6d}
        if self.cfg.with_shape:
            out["betas"] = y[:, 6 * R: 6 * R + NUM_BETAS]
            out["scale"] = torch.exp(y[:, 6 * R + NUM_BETAS])
        return out


def BodyIKNet() -> IKNet:  # noqa: N802 - the paper's name
    return IKNet(BODY_CONFIG)


def HandIKNet() -> IKNet:  # noqa: N802
    return IKNet(HAND_CONFIG)


def build(cfg: NetConfig | dict) -> IKNet:
    return IKNet(cfg if isinstance(cfg, NetConfig) else NetConfig(**cfg))
