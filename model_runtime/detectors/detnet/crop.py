"""Square crops of images or feature maps by bilinear sampling (the RoIAlign of Fig. 2).

torchvision is not installed here, so crops use :func:`torch.nn.functional.grid_sample`, which
works on CPU and CUDA and lets gradients reach the cropped features.  A box is (cx, cy, side) in
px of the network input I_h; because a map of any stride covers the same image, the same box
crops I_h and F* alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_grid(boxes: torch.Tensor, out: int, image_side: float, flip: torch.Tensor | None = None) -> torch.Tensor:
    """Sampling grid for :func:`torch.nn.functional.grid_sample`.

    Args:
        boxes: ``(B, 3)`` (cx, cy, side) px of the I_h image whose side is ``image_side`` px.
        out: output side in samples.
        flip: ``(B,)`` bool, mirror that crop horizontally (the right hand for SuppFeatNet).
    Returns:
        ``(B, out, out, 2)`` normalised (x, y) in [-1, 1] (align_corners=False).
    """
    t = (torch.arange(out, device=boxes.device, dtype=boxes.dtype) + 0.5) / out - 0.5   # (out,)
    xs = boxes[:, None, 0] + t[None] * boxes[:, None, 2]                                 # (B, out)
    ys = boxes[:, None, 1] + t[None] * boxes[:, None, 2]
    if flip is not None:
        xs = torch.where(flip[:, None], 2 * boxes[:, None, 0] - xs, xs)
    gx = xs[:, None, :].expand(-1, out, -1)
    gy = ys[:, :, None].expand(-1, -1, out)
    return torch.stack([gx, gy], -1) * (2.0 / image_side) - 1.0


def crop(maps: torch.Tensor, index: torch.Tensor, boxes: torch.Tensor, out: int, image_side: float,
         flip: torch.Tensor | None = None) -> torch.Tensor:
    """Bilinear square crops, zeros outside the map.

    Args:
        maps: ``(N, C, h, w)`` image or features covering the ``image_side``-px square input.
        index: ``(B,)`` long, which of the N maps each crop comes from.
        boxes: ``(B, 3)`` (cx, cy, side) px.
        flip: ``(B,)`` bool or None, mirror the crop horizontally.
    Returns:
        ``(B, C, out, out)``.
    """
    grid = crop_grid(boxes.to(maps.dtype), out, image_side, flip)
    return F.grid_sample(maps[index], grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop_to_image(xy_crop: torch.Tensor, boxes: torch.Tensor, crop_side: float) -> torch.Tensor:
    """Points in crop px (the crop is ``crop_side`` px wide, not flipped) -> image px.

    Args:
        xy_crop: ``(B, K, 2)``; boxes: ``(B, 3)`` (cx, cy, side).
    Returns:
        ``(B, K, 2)`` px of I_h.
    """
    scale = (boxes[:, 2] / crop_side)[:, None, None]
    return (xy_crop - crop_side / 2) * scale + boxes[:, None, :2]


def image_to_crop(xy: torch.Tensor, boxes: torch.Tensor, crop_side: float) -> torch.Tensor:
    """Inverse of :func:`crop_to_image`: ``(B, K, 2)`` image px -> crop px."""
    scale = (crop_side / boxes[:, 2])[:, None, None]
    return (xy - boxes[:, None, :2]) * scale + crop_side / 2
