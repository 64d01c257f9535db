"""PoseNet (Sec. 3.2.5): six conv layers -> keypoint-maps K, delta-maps D, location-maps L.

The same atomic structure is used for BasicBody-PoseNet, ExtBody-PoseNet and the Hand-PoseNets.
At inference the 3D coordinate of keypoint i is read from L_i at the argmax of K_i
(:func:`read_at_argmax`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .blocks import conv_bn_relu


class PoseMaps(NamedTuple):
    """Outputs of a :class:`PoseNet` for K keypoints on an ``h x w`` grid.

    Attributes:
        K: ``(N, K, h, w)`` keypoint-maps (2D confidence, target: Gaussians).
        D: ``(N, K, 3, h, w)`` delta-maps (unit bone direction parent -> keypoint).
        L: ``(N, K, 3, h, w)`` location-maps (root-relative 3D position).
    """

    K: torch.Tensor
    D: torch.Tensor
    L: torch.Tensor

    def flat(self) -> torch.Tensor:
        """``(N, 7K, h, w)``: K, D and L stacked on the channel axis (what F* concatenates)."""
        n, k, h, w = self.K.shape
        return torch.cat([self.K, self.D.reshape(n, 3 * k, h, w), self.L.reshape(n, 3 * k, h, w)], 1)


class PoseNet(nn.Module):
    """Six convolutional layers: 3x3, 3x3, 3x3, 1x1, 1x1 (all BN + ReLU), then a 1x1 to ``7 K`` maps.

    ``(N, c_in, h, w)`` -> :class:`PoseMaps` with K = ``num_keypoints`` on the same ``h x w`` grid.
    """

    def __init__(self, c_in: int, num_keypoints: int, c: int):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.body = nn.Sequential(conv_bn_relu(c_in, c, 3), conv_bn_relu(c, c, 3), conv_bn_relu(c, c, 3),
                                  conv_bn_relu(c, c, 1), conv_bn_relu(c, c, 1))
        self.head = nn.Conv2d(c, 7 * num_keypoints, 1)

    def forward(self, x: torch.Tensor) -> PoseMaps:
        y = self.head(self.body(x))
        n, _, h, w = y.shape
        k = self.num_keypoints
        return PoseMaps(y[:, :k], y[:, k:4 * k].reshape(n, k, 3, h, w), y[:, 4 * k:].reshape(n, k, 3, h, w))


def argmax_2d(K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peak of every keypoint-map.

    Args:
        K: ``(..., h, w)`` maps.
    Returns:
        ``(row, col, value)``, each ``(...)``: integer cell of the maximum and the map's value there.
    """
    h, w = K.shape[-2:]
    value, idx = K.flatten(-2).max(-1)
    return torch.div(idx, w, rounding_mode="floor"), idx % w, value


def read_at_argmax(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """3D coordinates read from the location-maps at the argmax of the keypoint-maps.

    Args:
        K: ``(N, K, h, w)``; L: ``(N, K, 3, h, w)``.
    Returns:
        ``(N, K, 3)`` with ``out[n, k] = L[n, k, :, r, c]`` where ``(r, c) = argmax K[n, k]``.
    """
    n, k, h, w = K.shape
    idx = K.reshape(n, k, h * w).argmax(-1)                                    # (N, K)
    return torch.gather(L.reshape(n, k, 3, h * w), 3, idx[:, :, None, None].expand(n, k, 3, 1))[..., 0]


def subpixel_peak(K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak location refined by the weighted mean of the 3x3 neighbourhood of the argmax.

    Args:
        K: ``(N, K, h, w)``.
    Returns:
        ``xy`` ``(N, K, 2)`` in map cells (cell (0, 0)'s centre = (0, 0)) and ``value`` ``(N, K)``
        the map's maximum.
    """
    n, k, h, w = K.shape
    r, c, value = argmax_2d(K)
    off = torch.arange(-1, 2, device=K.device)
    rr = (r[..., None, None] + off[:, None]).clamp(0, h - 1)                   # (N, K, 3, 1)
    cc = (c[..., None, None] + off[None, :]).clamp(0, w - 1)                   # (N, K, 1, 3)
    idx = (rr * w + cc).reshape(n, k, 9)
    patch = torch.gather(K.reshape(n, k, h * w), 2, idx).reshape(n, k, 3, 3).clamp_min(0)
    wsum = patch.sum((-1, -2)).clamp_min(1e-6)
    dy = (patch.sum(-1) * off.to(K.dtype)).sum(-1) / wsum
    dx = (patch.sum(-2) * off.to(K.dtype)).sum(-1) / wsum
    return torch.stack([c.to(K.dtype) + dx, r.to(K.dtype) + dy], -1), value
