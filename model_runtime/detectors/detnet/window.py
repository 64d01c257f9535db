"""Hand / face localisation by the sliding window of Eq. 6, vectorised over sizes, positions and batch.

Eq. 6: the smallest square window side w for which some position (u, v) holds more than
``t`` times the heat-map's total mass; among the positions of that w the one with the largest
mass.  All window sums for every (w, u, v) come from one integral image (cumulative sums),
so there is no Python loop over pixels or sizes.
"""
from __future__ import annotations

import torch


def window_sums(H: torch.Tensor) -> torch.Tensor:
    """Mass of every square window of every size.

    Args:
        H: ``(N, h, w)`` non-negative heat-maps.
    Returns:
        ``(N, m, h, w)`` with m = min(h, w); entry ``[n, s-1, u, v]`` = sum of ``H[n, u:u+s, v:v+s]``,
        ``-inf`` where the window leaves the map.

    The four corners of every window are strided views of one zero-padded integral image
    (shifting the row and the column by the window side is one stride), so no index tensors
    are built.
    """
    n, h, w = H.shape
    m = min(h, w)
    ii = torch.nn.functional.pad(H.cumsum(1).cumsum(2), (1, m, 1, m)).contiguous()   # (N, h+1+m, w+1+m)
    sn, sr, sc = ii.stride()
    base = ii[:, 1:, 1:]                                   # corner (u + s, v + s) at s = 1 -> offset (1, 1)

    def view(t, stride_s):
        return t.as_strided((n, m, h, w), (sn, stride_s, sr, sc))

    sums = (view(base, sr + sc) - view(ii[:, :, 1:], sc) - view(ii[:, 1:, :], sr)
            + ii[:, None, :h, :w])
    s = torch.arange(1, m + 1, device=H.device)[:, None, None]
    inside = ((torch.arange(h, device=H.device)[None, :, None] + s) <= h) & \
             ((torch.arange(w, device=H.device)[None, None, :] + s) <= w)
    return sums.masked_fill(~inside, float("-inf"))


def sliding_window(H: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6 on a batch of heat-maps.

    Args:
        H: ``(N, h, w)`` heat-maps (negative values are clipped to 0).
        t: threshold in (0, 1).
    Returns:
        ``box`` ``(N, 3)`` = (x0, y0, side) in map cells (x = column, y = row of the window's top-left
        cell; the window covers cells x0 .. x0 + side - 1), and ``mass`` ``(N,)`` the heat-map's total
        mass (0: nothing there, the box is meaningless).
    """
    H = H.clamp_min(0)
    n, h, w = H.shape
    total = H.sum((1, 2))                                                     # (N,)
    best, pos = window_sums(H).flatten(2).max(2)                              # (N, m)
    ok = best > t * total[:, None]
    m = ok.shape[1]
    size_idx = torch.where(ok.any(1), ok.float().argmax(1), torch.full_like(total, m - 1, dtype=torch.long))
    p = pos.gather(1, size_idx[:, None])[:, 0]
    box = torch.stack([(p % w).to(H.dtype), torch.div(p, w, rounding_mode="floor").to(H.dtype),
                       (size_idx + 1).to(H.dtype)], 1)
    return box, total


def window_to_box(box_cells: torch.Tensor, stride: float, scale: float, min_side: float) -> torch.Tensor:
    """Map-cell window -> square crop box in image px, enlarged around its centre.

    Args:
        box_cells: ``(..., 3)`` (x0, y0, side) from :func:`sliding_window`.
        stride: image px per map cell.
        scale: enlargement factor; ``min_side``: smallest box side, px.
    Returns:
        ``(..., 3)`` (cx, cy, side) px.
    """
    cx = (box_cells[..., 0] + 0.5 * box_cells[..., 2]) * stride
    cy = (box_cells[..., 1] + 0.5 * box_cells[..., 2]) * stride
    side = (box_cells[..., 2] * stride * scale).clamp_min(min_side)
    return torch.stack([cx, cy, side], -1)
