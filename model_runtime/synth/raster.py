"""Batched z-buffer rasteriser (torch, any device): many images of one triangle list at once.

Generalises :func:`model_runtime.face.render.rasterize` (one mesh, float64) to a batch
of ``N`` images whose vertices differ but whose triangles are shared, in float32,
returning the covered pixels as a flat list so shading only touches them.
Same conventions: pixel ``(row i, col j)`` has its centre at ``(x, y) = (j + 0.5, i + 0.5)``
(COCO), depth ``z`` grows away from the camera, the nearest triangle wins (ties: lowest
triangle id), both windings are drawn.  No Python loop over triangles or pixels: every
triangle's bounding box is expanded into candidate pixels, the z-test is a ``scatter_reduce``;
the only loop is over chunks of images that bound the candidate count (memory).
Depth and barycentrics are perspective-correct (``1/z`` is interpolated in screen space).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BatchRaster:
    """Result of :func:`rasterize_batch` for ``N`` images of ``H x W``.

    face_id ``(N, H, W)`` long, ``-1`` where no triangle covers the pixel centre;
    depth ``(N, H, W)`` float32 camera ``z`` of the visible surface (``inf`` on background);
    pix ``(P,)`` long flat indices ``n * H * W + i * W + j`` of the covered pixels;
    fid ``(P,)`` their triangle; bary ``(P, 3)`` perspective-correct barycentric weights.
    """

    face_id: torch.Tensor
    depth: torch.Tensor
    pix: torch.Tensor
    fid: torch.Tensor
    bary: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """``(N, H, W)`` bool: pixel covered by a triangle."""
        return self.face_id >= 0

    @property
    def image_index(self) -> torch.Tensor:
        """``(P,)`` image of each covered pixel."""
        N, H, W = self.face_id.shape
        return torch.div(self.pix, H * W, rounding_mode="floor")

    def interpolate(self, corner_values: torch.Tensor) -> torch.Tensor:
        """Per-corner values ``(N, F, 3, C)`` (or ``(F, 3, C)`` shared by all images)
        -> ``(P, C)`` at the covered pixels."""
        if corner_values.dim() == 3:
            vals = corner_values[self.fid]                                   # (P, 3, C)
        else:
            vals = corner_values[self.image_index, self.fid]                 # (P, 3, C)
        return (self.bary[..., None] * vals).sum(-2)


def _chunk_raster(tri: torch.Tensor, height: int, width: int, n0: int, face_id, depth):
    """Rasterise ``tri (n, F, 3, 3)`` (x, y px, z) of images ``n0..n0+n`` into the flat buffers."""
    dev = tri.device
    n, F = tri.shape[:2]
    t = tri.reshape(n * F, 3, 3)
    valid = (t[..., 2] > 1e-6).all(-1)
    xs, ys = t[..., 0], t[..., 1]
    on_screen = valid & (xs.amax(-1) >= 0) & (xs.amin(-1) <= width) & (ys.amax(-1) >= 0) & (ys.amin(-1) <= height)
    x0 = torch.floor(xs.amin(-1) - 0.5).clamp(0, width - 1)
    x1 = torch.ceil(xs.amax(-1) - 0.5).clamp(0, width - 1)
    y0 = torch.floor(ys.amin(-1) - 0.5).clamp(0, height - 1)
    y1 = torch.ceil(ys.amax(-1) - 0.5).clamp(0, height - 1)
    bw = (x1 - x0 + 1).long() * on_screen
    bh = (y1 - y0 + 1).long() * on_screen
    counts = bw * bh
    total = int(counts.sum())
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    if total == 0:
        return empty, empty, torch.zeros(0, 3, device=dev), torch.zeros(0, device=dev)
    gidx = torch.repeat_interleave(torch.arange(n * F, device=dev), counts)   # (M,) triangle of image
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=dev) - start[gidx]
    bwg = bw[gidx]
    px = x0[gidx].long() + local % bwg
    py = y0[gidx].long() + torch.div(local, bwg, rounding_mode="floor")
    cx, cy = px.to(t.dtype) + 0.5, py.to(t.dtype) + 0.5
    a, b, c = t[gidx, 0], t[gidx, 1], t[gidx, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    ok = den.abs() > 1e-9
    den = torch.where(ok, den, torch.ones_like(den))
    w0 = ((b[:, 1] - c[:, 1]) * (cx - c[:, 0]) + (c[:, 0] - b[:, 0]) * (cy - c[:, 1])) / den
    w1 = ((c[:, 1] - a[:, 1]) * (cx - c[:, 0]) + (a[:, 0] - c[:, 0]) * (cy - c[:, 1])) / den
    w2 = 1.0 - w0 - w1
    eps = -1e-6
    inside = ok & (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    gidx, px, py = gidx[inside], px[inside], py[inside]
    w = torch.stack([w0[inside], w1[inside], w2[inside]], -1).clamp_min(0)
    zc = torch.stack([a[inside, 2], b[inside, 2], c[inside, 2]], -1)
    wz = w / zc                                                   # perspective-correct weights
    zinv = wz.sum(-1)
    z = 1.0 / zinv
    bary = wz / zinv[:, None]
    img = torch.div(gidx, F, rounding_mode="floor")
    fid = gidx - img * F
    pix = (img + n0) * (height * width) + py * width + px
    # z-test: nearest depth, then the lowest triangle id among exact ties
    lpix = pix - n0 * height * width
    zbuf = torch.full((n * height * width,), float("inf"), dtype=z.dtype, device=dev)
    zbuf = zbuf.scatter_reduce(0, lpix, z, reduce="amin")
    win = z <= zbuf[lpix]
    best = torch.full((n * height * width,), torch.iinfo(torch.long).max, dtype=torch.long, device=dev)
    best = best.scatter_reduce(0, lpix[win], fid[win], reduce="amin")
    keep = win & (fid == best[lpix])
    pix, fid, bary, z = pix[keep], fid[keep], bary[keep], z[keep]
    face_id.view(-1)[pix] = fid
    depth.view(-1)[pix] = z
    return pix, fid, bary, z


def rasterize_batch(verts_px: torch.Tensor, faces: torch.Tensor, height: int, width: int,
                    max_candidates: int = 12_000_000) -> BatchRaster:
    """Z-buffer rasterisation of ``N`` images sharing one triangle list.

    verts_px ``(N, V, 3)``: x, y in pixels, z camera depth (> 0 in front; triangles with a
    vertex at z <= 0 are culled); faces ``(F, 3)`` long.  Images are processed in chunks whose
    estimated candidate count stays under ``max_candidates`` (one image over it is still drawn
    alone).  Returns :class:`BatchRaster`.
    """
    dev = verts_px.device
    N = verts_px.shape[0]
    v = verts_px.detach().float()
    f = faces.to(device=dev, dtype=torch.long)
    tri = v[:, f]                                                             # (N, F, 3, 3)
    face_id = torch.full((N, height, width), -1, dtype=torch.long, device=dev)
    depth = torch.full((N, height, width), float("inf"), dtype=torch.float32, device=dev)
    # candidate estimate per image: bounding-box areas of the on-screen triangles
    span = (tri[..., :2].amax(-2) - tri[..., :2].amin(-2)).clamp(max=max(height, width)) + 1.5
    est = (span[..., 0] * span[..., 1] * (tri[..., 2] > 1e-6).all(-1)).sum(-1)        # (N,)
    parts = []
    n0 = 0
    while n0 < N:
        n1, acc = n0 + 1, float(est[n0])
        while n1 < N and acc + float(est[n1]) <= max_candidates:
            acc += float(est[n1])
            n1 += 1
        parts.append(_chunk_raster(tri[n0:n1], height, width, n0, face_id, depth))
        n0 = n1
    pix, fid, bary, _ = (torch.cat(x) for x in zip(*parts))
    return BatchRaster(face_id, depth, pix, fid, bary)
