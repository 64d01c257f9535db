"""DetNet (Sec. 3.2, Fig. 2 right): body, hand and face keypoint detection in one network.

Path of one batch (S = ``config.input_size``, h = S / 8, m = ``config.hand_map``)::

    I_h (N,3,S,S) --bilinear 1/4--> I (N,3,S/4,S/4) --MainFeatNet--> F (N,c,h,h)
    F --BasicBody-PoseNet--> K,D,L of the 15 basic keypoints
    F* = [F, K, D, L]  --ExtBody-PoseNet--> the 9 extended keypoints
    F* --1 conv--> H_l, H_r, H_f (N,3,h,h) --Eq. 6 window--> hand boxes, face box
    per hand: crop(F*) -> resize m x m -> 1 conv  (body-features)
              crop(I_h) 2m x 2m, right hand mirrored -> SuppFeatNet (8 ResNet blocks) -> m x m,
              mirrored back  (supp-features)
              [body-features, supp-features, attention channel] -> Hand-PoseNet (one per side)

During training the hand boxes are given (``hand_boxes``, from the labels through the same Eq. 6
window), at inference they come from the predicted heat-maps.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResBlock, conv_bn_relu
from .config import NUM_BASIC, NUM_EXTENDED, NUM_HAND, DetNetConfig
from .crop import crop
from .posenet import PoseMaps, PoseNet
from .window import sliding_window, window_to_box


class MainFeatNet(nn.Module):
    """ResNet-like extractor on I: ``(N, 3, S/4, S/4)`` -> F ``(N, c, S/8, S/8)``."""

    def __init__(self, c: int, blocks: int):
        super().__init__()
        layers = [conv_bn_relu(3, c // 2, 3), ResBlock(c // 2, c, stride=2)]
        layers += [ResBlock(c, c) for _ in range(blocks - 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SuppFeatNet(nn.Module):
    """Shallow high-resolution hand features: 8 ResNet blocks (the 2nd halves the resolution).

    ``(B, 3, 2m, 2m)`` -> ``(B, c, m, m)``.
    """

    def __init__(self, c: int):
        super().__init__()
        blocks = [ResBlock(c, c, stride=2)] + [ResBlock(c, c) for _ in range(7)]
        self.net = nn.Sequential(conv_bn_relu(3, c, 3), *blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DetNetOutput(NamedTuple):
    """Raw network outputs (N images, h = S / 8, m = hand map side).

    Attributes:
        basic: :class:`PoseMaps` of the 15 basic body keypoints on ``h x h``.
        ext: :class:`PoseMaps` of the 9 extended body keypoints on ``h x h``.
        heat: ``(N, 3, h, h)`` H_l, H_r, H_f.
        hands: :class:`PoseMaps` with a side axis: K ``(N, 2, 21, m, m)``, D/L ``(N, 2, 21, 3, m, m)``
            in the crop frame (not mirrored), L in metres x ``config.hand_units``, wrist-relative.
        hand_boxes: ``(N, 2, 3)`` (cx, cy, side) px of I_h of the [left, right] hand crops.
        hand_mass: ``(N, 2)`` total mass of H_l, H_r (no hand where it is ~0).
        face_box: ``(N, 3)`` (cx, cy, side) px from H_f by Eq. 6; ``face_mass``: ``(N,)``.
    """

    basic: PoseMaps
    ext: PoseMaps
    heat: torch.Tensor
    hands: PoseMaps
    hand_boxes: torch.Tensor
    hand_mass: torch.Tensor
    face_box: torch.Tensor
    face_mass: torch.Tensor


class DetNet(nn.Module):
    """The whole detector; see the module docstring.  ``config`` fixes widths and the Table 6 switch."""

    def __init__(self, config: DetNetConfig = DetNetConfig()):
        super().__init__()
        self.config = config
        w = config.width
        c = w["main_c"]
        self.main = MainFeatNet(c, w["main_blocks"])
        self.basic = PoseNet(c, NUM_BASIC, w["pose_c"])
        c_star = c + 7 * NUM_BASIC
        self.ext = PoseNet(c_star, NUM_EXTENDED, w["pose_c"])
        self.heat = nn.Conv2d(c_star, 3, 1)
        c_hand = 1
        self.body_feat = self.supp = None
        if config.hand_features in ("both", "body"):
            self.body_feat = conv_bn_relu(c_star, w["body_feat_c"], 3)
            c_hand += w["body_feat_c"]
        if config.hand_features in ("both", "supp"):
            self.supp = SuppFeatNet(w["supp_c"])
            c_hand += w["supp_c"]
        self.hand_nets = nn.ModuleList([PoseNet(c_hand, NUM_HAND, w["hand_c"]) for _ in range(2)])

    # -- stages (separate so that the timing tool can time each module) --
    def body_stage(self, image: torch.Tensor) -> tuple[torch.Tensor, PoseMaps, PoseMaps, torch.Tensor]:
        """``(N, 3, S, S)`` RGB in [0, 1] -> F* ``(N, c*, h, h)``, basic, ext maps, heat ``(N, 3, h, h)``."""
        low = F.interpolate(image - 0.5, scale_factor=0.25, mode="bilinear", align_corners=False, antialias=True)
        feat = self.main(low)
        basic = self.basic(feat)
        fstar = torch.cat([feat, basic.flat()], 1)
        return fstar, basic, self.ext(fstar), self.heat(fstar)

    def locate(self, heat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 6 on H_l, H_r, H_f: ``(N, 3, h, h)`` -> hand boxes ``(N, 2, 3)``, hand mass ``(N, 2)``,
        face box ``(N, 3)``, face mass ``(N,)`` (boxes (cx, cy, side) px of I_h)."""
        cfg = self.config
        n = heat.shape[0]
        cells, mass = sliding_window(heat.detach().float().reshape(n * 3, *heat.shape[2:]), cfg.window_t)
        boxes = window_to_box(cells, cfg.body_stride, cfg.box_scale, cfg.hand_min_box).reshape(n, 3, 3)
        mass = mass.reshape(n, 3)
        return boxes[:, :2], mass[:, :2], boxes[:, 2], mass[:, 2]

    def hand_stage(self, image: torch.Tensor, fstar: torch.Tensor, boxes: torch.Tensor,
                   attention: torch.Tensor) -> PoseMaps:
        """Hand keypoints of both hands.

        Args:
            image: ``(N, 3, S, S)``; fstar: ``(N, c*, h, h)``; boxes: ``(N, 2, 3)`` px;
            attention: ``(N,)`` 1 where body-features are valid (a body is in the image), else 0.
        Returns:
            :class:`PoseMaps` with K ``(N, 2, 21, m, m)``, D/L ``(N, 2, 21, 3, m, m)``.
        """
        cfg = self.config
        n, m, S = image.shape[0], cfg.hand_map, float(cfg.input_size)
        index = torch.arange(n, device=image.device).repeat_interleave(2)           # (2N,) rows n*2+side
        flat_boxes = boxes.reshape(2 * n, 3)
        parts = []
        if self.body_feat is not None:
            parts.append(self.body_feat(crop(fstar, index, flat_boxes, m, S)))
        if self.supp is not None:
            right = torch.arange(2 * n, device=image.device) % 2 == 1
            patches = crop(image - 0.5, index, flat_boxes, 2 * m, S, flip=right)  # left + mirrored right
            supp = self.supp(patches)
            parts.append(torch.where(right[:, None, None, None], supp.flip(-1), supp))   # mirrored back
        att = attention.to(image.dtype).repeat_interleave(2)[:, None, None, None].expand(2 * n, 1, m, m)
        x = torch.cat(parts + [att], 1).reshape(n, 2, -1, m, m)
        maps = [self.hand_nets[s](x[:, s]) for s in range(2)]
        return PoseMaps(*(torch.stack([a, b], 1) for a, b in zip(*maps)))

    def forward(self, image: torch.Tensor, attention: torch.Tensor | None = None,
                hand_boxes: torch.Tensor | None = None) -> DetNetOutput:
        """Args:
            image: ``(N, 3, S, S)`` RGB in [0, 1], S = ``config.input_size``.
            attention: ``(N,)`` attention channel (default 1: inference).
            hand_boxes: ``(N, 2, 3)`` crop boxes to use instead of the predicted ones (training).
        """
        fstar, basic, ext, heat = self.body_stage(image)
        boxes, mass, face_box, face_mass = self.locate(heat)
        if hand_boxes is not None:
            boxes = hand_boxes.to(image.dtype)
        if attention is None:
            attention = torch.ones(image.shape[0], device=image.device)
        hands = self.hand_stage(image, fstar, boxes.to(image.dtype), attention)
        return DetNetOutput(basic, ext, heat, hands, boxes, mass, face_box, face_mass)
