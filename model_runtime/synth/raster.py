"""Batched z-buffer rasteriser (torch, any device): many images of one triangle list at once.

Generalises :func:`model_runtime.face.render.rasterize` (one mesh, float64) to a batch
of ``N`` images whose vertices differ but whose triangles are shared, in float32,
returning the covered pixels as a flat list so shading only touches them.
Same conventions: pixel ``(row i, col j)`` has its centre at ``(x, y) = (j + 0.5, i + 0.5)``
(COCO), depth ``z`` grows away from the camera, the nearest triangle wins (ties: lowest
triangle id), both windings are drawn.  No Python loop over triangles or pixels: every
triangle's bounding box is expanded into candidate pixels, the z-test is a ``scatter_reduce``;
the only loops are over chunks of images that bound the candidate count (memory) and over
six tile sizes: small triangles are tested against dense ``s x s`` pixel grids (:data:`TILE_SIDES`).
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
    pix ``(P,)`` long flat indices ``n * H * W + i * W + j`` of the covered pixels, ascending;
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

    def image_counts(self) -> list[int]:
        """Covered pixels per image (the runs of :attr:`pix`)."""
        N, H, W = self.face_id.shape
        return torch.bincount(self.image_index, minlength=N).tolist()

    def interpolate(self, corner_values: torch.Tensor) -> torch.Tensor:
        """Per-corner values ``(N, F, 3, C)`` (or ``(F, 3, C)`` shared by all images)
        -> ``(P, C)`` at the covered pixels."""
        if corner_values.dim() == 3:
            vals = corner_values[self.fid]                                   # (P, 3, C)
        else:
            vals = corner_values[self.image_index, self.fid]                 # (P, 3, C)
        return (self.bary[..., None] * vals).sum(-2)


#: size classes of the tiled candidate expansion: a triangle whose pixel bounding box fits in
#: ``s x s`` is tested against a dense ``s*s`` grid (no per-candidate gathers); larger ones are
#: expanded pixel by pixel (:func:`_expand_large`)
TILE_SIDES = (1, 2, 4, 8, 16, 32, 64)


def _setup(t: torch.Tensor, height: int, width: int, cull: int):
    """Per-triangle set-up of ``t (T, 3, 3)``: which survive, their bbox and edge functions.

    Returns ``keep (T,)`` bool and, for the kept ones, ``x0, y0, bw, bh`` (long) and the
    barycentric planes ``A (T', 2), B (T', 2), C (T', 2)`` (``w_k = A_k x + B_k y + C_k`` at pixel
    centres relative to the bbox origin, k = 0, 1) and ``iz (T', 3)`` = 1 / corner depth.
    ``cull``: +1 / -1 drops triangles whose screen-space signed area has that sign (back
    faces of a consistently wound mesh), 0 keeps both windings.
    """
    xs, ys, zs = t[..., 0], t[..., 1], t[..., 2]
    a, b, c = t[:, 0], t[:, 1], t[:, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    keep = (zs > 1e-6).all(-1) & (xs.amax(-1) >= 0) & (xs.amin(-1) <= width) & (ys.amax(-1) >= 0) \
        & (ys.amin(-1) <= height) & (den.abs() > 1e-9)
    if cull:
        keep &= (den * cull) < 0
    t, den = t[keep], den[keep]
    xs, ys = t[..., 0], t[..., 1]
    x0 = torch.floor(xs.amin(-1) - 0.5).clamp(0, width - 1)
    x1 = torch.ceil(xs.amax(-1) - 0.5).clamp(0, width - 1)
    y0 = torch.floor(ys.amin(-1) - 0.5).clamp(0, height - 1)
    y1 = torch.ceil(ys.amax(-1) - 0.5).clamp(0, height - 1)
    a, b, c = t[:, 0], t[:, 1], t[:, 2]
    A = torch.stack([(b[:, 1] - c[:, 1]), (c[:, 1] - a[:, 1])], -1) / den[:, None]
    B = torch.stack([(c[:, 0] - b[:, 0]), (a[:, 0] - c[:, 0])], -1) / den[:, None]
    ox, oy = x0 + 0.5 - c[:, 0], y0 + 0.5 - c[:, 1]                 # bbox origin relative to corner c
    C = A * ox[:, None] + B * oy[:, None]
    return keep, x0.long(), y0.long(), (x1 - x0 + 1).long(), (y1 - y0 + 1).long(), A, B, C, 1.0 / t[..., 2]


def _inside(A, B, C, iz, i, j):
    """Barycentrics at local pixel offsets ``i, j`` (broadcastable): ``(w0, w1, w2, zinv, inside)``."""
    w0 = C[..., 0] + A[..., 0] * i + B[..., 0] * j
    w1 = C[..., 1] + A[..., 1] * i + B[..., 1] * j
    w2 = 1.0 - w0 - w1
    eps = -1e-6
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps)
    return w0, w1, w2, inside


def _expand_large(sel, x0, y0, bw, bh, A, B, C):
    """Pixel-by-pixel candidates of the triangles ``sel`` (big bounding boxes)."""
    dev = x0.device
    counts = bw[sel] * bh[sel]
    total = int(counts.sum())
    rows = torch.repeat_interleave(sel, counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=dev) - torch.repeat_interleave(start, counts)
    bwr = bw[rows]
    i = local % bwr
    j = torch.div(local, bwr, rounding_mode="floor")
    w0, w1, w2, inside = _inside(A[rows], B[rows], C[rows], None, i.float(), j.float())
    return rows[inside], i[inside], j[inside], w0[inside], w1[inside], w2[inside]


def _chunk_raster(tri: torch.Tensor, height: int, width: int, n0: int, face_id, depth, cull: int = 0):
    """Rasterise ``tri (n, F, 3, 3)`` (x, y px, z) of images ``n0..n0+n`` into the flat buffers."""
    dev = tri.device
    n, F = tri.shape[:2]
    keep, x0, y0, bw, bh, A, B, C, iz = _setup(tri.reshape(n * F, 3, 3), height, width, cull)
    gid = torch.nonzero(keep).flatten()                               # image * F + triangle
    side = torch.maximum(bw, bh)
    rows, ii, jj, ws = [], [], [], []
    lo = 0
    for s in TILE_SIDES:                                              # size classes, not triangles
        sel = torch.nonzero((side > lo) & (side <= s)).flatten()
        lo = s
        if not len(sel):
            continue
        k = torch.arange(s * s, device=dev)
        i, j = (k % s).float(), torch.div(k, s, rounding_mode="floor").float()
        w0, w1, w2, inside = _inside(A[sel, None], B[sel, None], C[sel, None], None, i[None], j[None])
        inside &= (i[None] < bw[sel, None]) & (j[None] < bh[sel, None])
        r, q = torch.nonzero(inside, as_tuple=True)
        rows.append(sel[r]), ii.append(q % s), jj.append(torch.div(q, s, rounding_mode="floor"))
        ws.append(torch.stack([w0[r, q], w1[r, q], w2[r, q]], -1))
    big = torch.nonzero(side > TILE_SIDES[-1]).flatten()
    if len(big):
        r, i, j, w0, w1, w2 = _expand_large(big, x0, y0, bw, bh, A, B, C)
        rows.append(r), ii.append(i), jj.append(j), ws.append(torch.stack([w0, w1, w2], -1))
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    if not rows:
        return empty, empty, torch.zeros(0, 3, device=dev), torch.zeros(0, device=dev)
    r, i, j, w = torch.cat(rows), torch.cat(ii), torch.cat(jj), torch.cat(ws).clamp_min(0)
    wz = w * iz[r]                                                  # perspective-correct weights
    zinv = wz.sum(-1)
    z = 1.0 / zinv
    bary = wz / zinv[:, None]
    g = gid[r]
    img = torch.div(g, F, rounding_mode="floor")
    fid = g - img * F
    lpix = img * (height * width) + (y0[r] + j) * width + (x0[r] + i)
    # z-test: nearest depth, then the lowest triangle id among exact ties
    zbuf = torch.full((n * height * width,), float("inf"), dtype=z.dtype, device=dev)
    zbuf = zbuf.scatter_reduce(0, lpix, z, reduce="amin")
    win = z <= zbuf[lpix]
    best = torch.full((n * height * width,), torch.iinfo(torch.long).max, dtype=torch.long, device=dev)
    best = best.scatter_reduce(0, lpix[win], fid[win], reduce="amin")
    keep = win & (fid == best[lpix])
    pix = lpix[keep] + n0 * height * width
    fid, bary, z = fid[keep], bary[keep], z[keep]
    face_id.view(-1)[pix] = fid
    depth.view(-1)[pix] = z
    return pix, fid, bary, z


def rasterize_batch(verts_px: torch.Tensor, faces: torch.Tensor, height: int, width: int,
                    max_candidates: int = 12_000_000, cull: int = 0) -> BatchRaster:
    """Z-buffer rasterisation of ``N`` images sharing one triangle list.

    verts_px ``(N, V, 3)``: x, y in pixels, z camera depth (> 0 in front; triangles with a
    vertex at z <= 0 are culled); faces ``(F, 3)`` long.  Images are processed in chunks whose
    estimated candidate count stays under ``max_candidates`` (one image over it is still drawn
    alone).  ``cull``: see :func:`_setup` (0 draws both windings).  Returns :class:`BatchRaster`.
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
        parts.append(_chunk_raster(tri[n0:n1], height, width, n0, face_id, depth, cull))
        n0 = n1
    pix, fid, bary, _ = (torch.cat(x) for x in zip(*parts))
    pix, order = torch.sort(pix)                  # image-major: one contiguous run per image
    return BatchRaster(face_id, depth, pix, fid[order], bary[order])
