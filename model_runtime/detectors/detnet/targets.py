"""Ground-truth maps of Sec. 3.2.5 built from keypoint labels (vectorised, batch-wise, any device).

K^GT: Gaussians at the 2D keypoints; D^GT: unit bone directions tiled over the map; L^GT: 3D
positions tiled over the map; H^GT (hands, face): the maximum over the channel axis of the
keypoint-maps of that part.
"""
from __future__ import annotations

import torch

from .window import sliding_window, window_to_box


def gaussian_maps(xy: torch.Tensor, vis: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """Gaussian keypoint-maps.

    Args:
        xy: ``(..., K, 2)`` keypoint positions in map cells (cell (0, 0)'s centre = (0, 0)).
        vis: ``(..., K)`` 1 = labelled (0 gives an all-zero map).
        sigma: standard deviation in cells.
    Returns:
        ``(..., K, h, w)`` with peak value 1 at each labelled keypoint.
    """
    ys = torch.arange(h, device=xy.device, dtype=xy.dtype)
    xs = torch.arange(w, device=xy.device, dtype=xy.dtype)
    gx = torch.exp(-(xs - xy[..., 0:1]) ** 2 / (2 * sigma ** 2))                 # (..., K, w)
    gy = torch.exp(-(ys - xy[..., 1:2]) ** 2 / (2 * sigma ** 2))                 # (..., K, h)
    return gy[..., :, None] * gx[..., None, :] * vis[..., None, None].to(xy.dtype)


def px_to_cells(xy_px: torch.Tensor, stride: float) -> torch.Tensor:
    """Image px (pixel (0, 0)'s corner = (0, 0)) -> map cells of a map with ``stride`` px per cell."""
    return xy_px / stride - 0.5


def cells_to_px(xy_cells: torch.Tensor, stride: float) -> torch.Tensor:
    """Inverse of :func:`px_to_cells`."""
    return (xy_cells + 0.5) * stride


def bone_directions(p3d: torch.Tensor, parents) -> torch.Tensor:
    """Unit vectors parent -> keypoint.

    Args:
        p3d: ``(..., K, 3)``; parents: ``(K,)`` parent index, -1 for the root.
    Returns:
        ``(..., K, 3)``; zero for the root (and for zero-length bones).
    """
    par = torch.as_tensor(parents, device=p3d.device)
    d = p3d - p3d[..., par.clamp_min(0), :]
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    return torch.where((par >= 0)[:, None], d, torch.zeros_like(d))


def part_heatmap(xy_cells: torch.Tensor, vis: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """H^GT of one part: ``(..., K, 2)``, ``(..., K)`` -> ``(..., h, w)`` (max over the K Gaussians)."""
    return gaussian_maps(xy_cells, vis, h, w, sigma).amax(-3)


def boxes_from_heatmaps(H: torch.Tensor, t: float, stride: float, scale: float, min_side: float) -> torch.Tensor:
    """The crop boxes the network would take from these heat-maps (Eq. 6 then enlargement).

    Args:
        H: ``(..., h, w)``.
    Returns:
        ``(..., 3)`` (cx, cy, side) px.
    """
    lead = H.shape[:-2]
    cells, _ = sliding_window(H.reshape(-1, *H.shape[-2:]).float(), t)
    return window_to_box(cells, stride, scale, min_side).reshape(*lead, 3)
